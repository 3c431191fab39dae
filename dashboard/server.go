package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

//go:embed assets
var assets embed.FS

// Options configure a dashboard server.
type Options struct {
	// Client reads the API server with the credentials of the person
	// looking.
	Client client.Client
	// Access says which namespaces that person may see; default: a
	// SelfSubjectAccessReview through Client.
	Access Access
	// Authenticator, when set, serves many people: it says who makes each
	// request and what they may see (e.g. TokenAuth), and Access is not
	// used. Client then reads with the server's own rights.
	Authenticator Authenticator
	// Namespaces are shown when the person may not list namespaces (for
	// example the kubeconfig context's namespace).
	Namespaces []string
	// Freshness is how long a namespace's reading is reused; default 2s,
	// the pages' polling interval.
	Freshness time.Duration
	Log       logr.Logger
}

// Server serves the dashboard's pages and data API.
type Server struct {
	src  *source
	auth Authenticator
	log  logr.Logger
	mux  *http.ServeMux
}

// New returns a dashboard server.
func New(o Options) (*Server, error) {
	if o.Client == nil {
		return nil, errors.New("dashboard: no API client")
	}
	if o.Access == nil {
		o.Access = NewSelfAccess(o.Client)
	}
	if o.Authenticator == nil {
		fixed := o.Access
		o.Authenticator = authenticatorFunc(func(*http.Request) (Access, error) { return fixed, nil })
	}
	if o.Freshness <= 0 {
		o.Freshness = 2 * time.Second
	}
	s := &Server{
		src: &source{client: o.Client, fixed: o.Namespaces, freshness: o.Freshness,
			data: map[string]*cachedNamespace{}, history: map[types.NamespacedName][]Point{}, listed: map[string]*cachedRollouts{}},
		auth: o.Authenticator,
		log:  o.Log,
		mux:  http.NewServeMux(),
	}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	page := func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, static, "index.html") }
	s.mux.HandleFunc("GET /{$}", page)
	s.mux.HandleFunc("GET /team/{team}", page)
	s.mux.HandleFunc("GET /rollout/{namespace}/{name}", page)
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /api/teams", s.api(s.teams))
	s.mux.HandleFunc("GET /api/teams/{team}", s.api(s.team))
	s.mux.HandleFunc("GET /api/rollouts/{namespace}/{name}", s.api(s.rollout))
	return s, nil
}

// ServeHTTP serves the pages and the data API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	s.mux.ServeHTTP(w, r)
}

// Serve serves on l until ctx ends, answering only requests addressed to a
// loopback name: for one person's dashboard on their own machine.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: localOnly(s), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shut); err != nil {
			s.log.Error(err, "dashboard shutdown")
		}
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve dashboard: %w", err)
	}
	return nil
}

// localOnly refuses requests whose Host is not a loopback name: the server
// acts with the user's credentials, so a web page elsewhere must not reach
// it through a name that resolves to 127.0.0.1 (DNS rebinding).
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, "the dashboard answers only on a loopback address", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// errForbidden answers 403 without naming what was asked for.
var errForbidden = errors.New("forbidden")

// errNotFound answers 404.
var errNotFound = errors.New("not found")

// authenticatorFunc adapts a function to Authenticator.
type authenticatorFunc func(r *http.Request) (Access, error)

func (f authenticatorFunc) Authenticate(r *http.Request) (Access, error) { return f(r) }

// api wraps a data handler: it authenticates the request, and answers JSON,
// errors as status codes with bounded, generic bodies.
func (s *Server) api(h func(r *http.Request, access Access) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		access, err := s.auth.Authenticate(r)
		var v any
		if err == nil {
			v, err = h(r, access)
		}
		switch {
		case errors.Is(err, ErrUnauthenticated):
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated: send a bearer token"})
			return
		case errors.Is(err, errForbidden) || apierrors.IsForbidden(err):
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden: you may not get rollouts there"})
			return
		case errors.Is(err, errNotFound):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
			return
		case err != nil && r.Context().Err() != nil:
			return // the page went away
		case err != nil:
			s.log.Error(err, "dashboard data", "path", r.URL.Path)
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the API server could not be read; see the dashboard's log"})
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return // the client went away; nothing else to tell it
	}
}

func (s *Server) teams(r *http.Request, access Access) (any, error) {
	teams, err := s.src.teamNamespaces(r.Context(), access)
	if err != nil {
		return nil, err
	}
	out := make([]TeamSummary, 0, len(teams))
	for team, nss := range teams {
		out = append(out, TeamSummary{Team: team, Namespaces: nss})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Team < out[j].Team })
	return out, nil
}

func (s *Server) team(r *http.Request, access Access) (any, error) {
	name := r.PathValue("team")
	teams, err := s.src.teamNamespaces(r.Context(), access)
	if err != nil {
		return nil, err
	}
	nss, ok := teams[name]
	if !ok {
		// Unknown and invisible teams look the same.
		return nil, errForbidden
	}
	t := Team{Team: name, Namespaces: nss, Services: []Service{}, Warnings: []Event{}, Problems: []string{}, External: []ExternalDependency{}}
	// A namespace that cannot be read is said, and does not hide the others.
	for i, d := range s.src.namespaces(r.Context(), nss) {
		if d.err != nil {
			if r.Context().Err() == nil {
				s.log.Error(d.err, "dashboard data", "namespace", nss[i])
			}
			t.Problems = append(t.Problems, nss[i]+": could not be read; see the dashboard's log")
			continue
		}
		t.Services = append(t.Services, d.services()...)
		t.External = append(t.External, d.externals()...)
		t.Warnings = append(t.Warnings, d.warnings()...)
		t.Problems = append(t.Problems, d.Problems...)
	}
	sort.SliceStable(t.Warnings, func(i, j int) bool { return t.Warnings[i].Time.After(t.Warnings[j].Time) })
	if len(t.Warnings) > maxWarnings {
		t.Warnings = t.Warnings[:maxWarnings]
	}
	teamOf, err := s.src.teamOf(r.Context())
	if err != nil {
		return nil, err
	}
	nameTeams(t.Services, teamOf)
	for i := range t.External {
		for j := range t.External[i].Callers {
			if tm := teamOf[t.External[i].Callers[j].Namespace]; tm != NoTeam {
				t.External[i].Callers[j].Team = tm
			}
		}
	}
	// Services of other teams this team calls: only in namespaces the
	// reader may see (teams holds nothing else). Their Rollouts say all
	// that is shown of them; their namespaces' other objects are not read.
	var others []string
	for other, onss := range teams {
		if other != name {
			others = append(others, onss...)
		}
	}
	sort.Strings(others)
	var called []Service
	for _, d := range s.src.rolloutsOnly(r.Context(), others) {
		if d.err == nil {
			called = append(called, d.services()...)
		}
	}
	t.DependsOn = dependencies(name, nss, called, teamOf)
	return t, nil
}

func (s *Server) rollout(r *http.Request, access Access) (any, error) {
	key := types.NamespacedName{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	ok, err := access.Allowed(r.Context(), key.Namespace)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errForbidden
	}
	d, err := s.src.namespace(r.Context(), key.Namespace)
	if err != nil {
		return nil, err
	}
	for i := range d.Rollouts {
		if d.Rollouts[i].Name == key.Name {
			ro := d.rollout(&d.Rollouts[i], s.src.seen(key))
			teamOf, err := s.src.teamOf(r.Context())
			if err != nil {
				return nil, err
			}
			svcs := []Service{ro.Service}
			nameTeams(svcs, teamOf)
			ro.Service = svcs[0]
			return ro, nil
		}
	}
	return nil, errNotFound
}
