package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/dashboard"
	"github.com/sluice-dev/sluice/local/cluster"
)

// Conditions of the dashboard benchmark; docs/dashboard.md reports them.
const (
	benchDashTeams      = 5
	benchDashTeamNS     = 2                // namespaces per team
	benchDashServices   = 10               // per namespace: 100 in all
	benchDashCanaries   = 10               // services with a canary under way
	benchDashExternals  = 2                // external dependencies per team, in its first namespace
	benchDashCallers    = 4                // calling namespaces per service: its own and three of other teams
	benchDashPages      = 10               // half team pages (one per team), half rollout pages of canaries
	benchDashPoll       = 2 * time.Second  // the pages' polling interval (app.js POLL_MS)
	benchDashCallersTTL = 10 * time.Second // the leader writes status.callers this often
	benchDashWindow     = time.Minute      // each phase
	benchDashSettle     = 30 * time.Second // before the first phase
)

// BenchmarkDashboardHundredServicesTenPages measures what the dashboard
// costs with 100 opted-in services (5 teams of 2 namespaces, 10 services
// each, 10 with a canary under way, 2 external dependencies per team) and
// 10 open pages. After a settling pause it runs four phases of a minute
// each and reports, for each, the CPU and memory of the controller (the
// leader), of the API server, of `sluice dashboard` (a process of its own,
// with the admin's kubeconfig) and of a second controller replica serving
// the dashboard for many people (--dashboard-addr), and the API server's
// requests per second by verb and resource:
//
//   - idle: the controllers alone;
//   - callers: status.callers of every Rollout and the external
//     dependencies' ConfigMaps rewritten every 10 s with changing counts, by
//     the same merge patches the leader sends (the load reports that drive
//     the leader's writes are not generated here: see docs/dashboard.md);
//   - pages: the same, and 10 pages of `sluice dashboard` polling the data
//     API every 2 s as app.js does (5 team pages, one per team, with their
//     "Depends on" and external dependencies; 5 rollout pages of canaries);
//   - replica-pages: the same 10 pages through the replica's dashboard,
//     each as a different viewer (bearer token of its own ServiceAccount).
//
// It also reports each page kind's latency quantiles. Run with
// -benchtime=1x; plain `go test` never runs it.
func BenchmarkDashboardHundredServicesTenPages(b *testing.B) {
	kube := rolloutKube(b)
	ctx := context.Background()
	prefix := fmt.Sprintf("bd%d", time.Now().UnixNano()%100000)
	f := benchDashFixture(b, kube, prefix)
	localURL, dashPID := startDashboardProcess(b, "bench", env.Kubeconfig())
	local := func(ctx context.Context, path string) (int, string, error) { return httpGet(ctx, localURL+path) }
	replicaURL, replicaPID, hc := startDashboardReplica(b)
	tokens := benchViewerTokens(b, prefix, f.namespaces[0][0])
	pids := map[string]int{"controller": sluice.proc.Pid(), "apiserver": env.Component("kube-apiserver").Pid(),
		"dashboard": dashPID, "replica": replicaPID}

	// The pages' data must be whole before it is measured: every service,
	// the callers, "Depends on" and the external dependencies; the same
	// through the replica with a viewer's token.
	for _, team := range f.teams {
		for _, get := range []benchGetter{local, tokens.getter(hc, replicaURL, 0)} {
			var t dashboard.Team
			if err := benchGetJSON(ctx, get, "/api/teams/"+team, &t); err != nil {
				b.Fatal(err)
			}
			callers := 0
			for _, s := range t.Services {
				callers += len(s.Callers)
			}
			if len(t.Services) != benchDashTeamNS*benchDashServices || callers != len(t.Services)*benchDashCallers ||
				len(t.DependsOn) == 0 || len(t.External) != benchDashExternals || t.External[0].Requests == 0 {
				b.Fatalf("team %s: %d services, %d callers, %d depended on, %d external dependencies",
					team, len(t.Services), callers, len(t.DependsOn), len(t.External))
			}
		}
	}
	// What setting up started (Events, first statuses) settles first.
	time.Sleep(benchDashSettle)

	phases := []struct {
		name    string
		callers bool
		pages   func(i int) benchGetter // nil: no pages
	}{
		{"idle", false, nil},
		{"callers", true, nil},
		{"pages", true, func(int) benchGetter { return local }},
		{"replica-pages", true, func(i int) benchGetter { return tokens.getter(hc, replicaURL, i) }},
	}
	b.ResetTimer()
	for _, p := range phases {
		before := benchSample(b, pids)
		pctx, cancel := context.WithTimeout(ctx, benchDashWindow)
		var wg sync.WaitGroup
		var writes *benchWrites
		if p.callers {
			writes = &benchWrites{}
			wg.Add(1)
			go func() { defer wg.Done(); f.writeCallers(pctx, kube, writes) }()
		}
		var polls *benchPolls
		if p.pages != nil {
			polls = &benchPolls{lat: map[string][]time.Duration{}}
			for i := range benchDashPages {
				wg.Add(1)
				go func() { defer wg.Done(); polls.page(pctx, p.pages(i), f.page(i), i) }()
			}
		}
		<-pctx.Done() // a phase with nothing to run lasts the window too
		wg.Wait()
		cancel()
		after := benchSample(b, pids)
		benchReport(b, p.name, before, after)
		if writes != nil {
			writes.report(b, p.name)
		}
		if polls != nil {
			polls.report(b, p.name)
		}
	}
	b.StopTimer()
	b.Logf("conditions: %d services (%d teams × %d namespaces × %d), %d canaries, %d callers each, %d external dependencies per team, %d pages polling every %s; phases of %s after %s settling",
		len(f.rollouts), benchDashTeams, benchDashTeamNS, benchDashServices, benchDashCanaries, benchDashCallers,
		benchDashExternals, benchDashPages, benchDashPoll, benchDashWindow, benchDashSettle)
}

// benchGetter GETs a path of a dashboard: its status and body.
type benchGetter func(ctx context.Context, path string) (int, string, error)

// startDashboardReplica starts a second controller replica serving the
// dashboard for many people on --dashboard-addr (HTTPS with the serving
// certificate). It is a follower: the harness' controller holds the lease,
// so its CPU is a replica's own work plus the dashboard's. It returns the
// dashboard's URL, the process id and an HTTPS client trusting the CA.
func startDashboardReplica(b *testing.B) (string, int, *http.Client) {
	ports := benchPorts(b, 7)
	args := []string{"controller", "--kubeconfig=" + env.Kubeconfig(), "--namespace=" + sluiceNamespace,
		"--replica-name=bench-dashboard", "--leader-elect",
		"--webhook-host=127.0.0.1", "--webhook-port=" + ports[0], "--cert-ips=127.0.0.1",
		"--xds-host=127.0.0.1", "--xds-port=" + ports[1], "--metrics-addr=127.0.0.1:" + ports[2],
		"--health-addr=127.0.0.1:" + ports[3], "--pprof-addr=127.0.0.1:" + ports[4], "--xds-legacy-port=" + ports[5],
		"--dashboard-addr=127.0.0.1:" + ports[6]}
	p, err := cluster.StartProcess("sluice-bench-dashboard", sluice.bin, args, filepath.Join(b.TempDir(), "replica.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		p.Stop(10 * time.Second)
		if b.Failed() {
			b.Logf("dashboard replica log:\n%s", p.LogTail(30))
		}
	})
	ca, err := os.ReadFile(sluice.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		b.Fatalf("no certificate in %s", sluice.CAFile)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	url := "https://127.0.0.1:" + ports[6]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cluster.WaitFor(ctx, "dashboard replica", []*cluster.Process{p}, func(ctx context.Context) (bool, error) {
		code, _, err := benchGet(ctx, hc, url+"/", "")
		return err == nil && code == http.StatusOK, err
	}); err != nil {
		b.Fatal(err)
	}
	return url, p.Pid(), hc
}

// benchPorts returns n distinct free loopback ports, closed again.
func benchPorts(b *testing.B, n int) []string {
	var out []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out
}

// benchTokens are bearer tokens of viewers: ServiceAccounts that may get
// and list Rollouts in every namespace, one per open page.
type benchTokens []string

// benchViewerTokens creates the viewers in ns and returns their tokens.
func benchViewerTokens(b *testing.B, prefix, ns string) benchTokens {
	ctx := context.Background()
	cs := env.Client()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-viewer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"rollouts"}, Verbs: []string{"get", "list", "watch"}}}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-viewer"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}}
	b.Cleanup(func() {
		for _, err := range []error{
			cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{}),
			cs.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{}),
		} {
			if err != nil {
				b.Errorf("delete viewer role: %v", err)
			}
		}
	})
	var out benchTokens
	for i := range benchDashPages {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("viewer-%d", i)}}
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		binding.Subjects = append(binding.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Namespace: ns, Name: sa.Name})
		expiry := int64(3600)
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, tr.Status.Token)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	return out
}

// getter GETs from the dashboard at url as the i-th viewer.
func (ts benchTokens) getter(hc *http.Client, url string, i int) benchGetter {
	return func(ctx context.Context, path string) (int, string, error) { return benchGet(ctx, hc, url+path, ts[i]) }
}

// benchGet returns the status and body of a GET through hc, with a bearer
// token if not empty.
func benchGet(ctx context.Context, hc *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// benchDash is what the benchmark created.
type benchDash struct {
	teams      []string
	namespaces [][]string // by team
	rollouts   []types.NamespacedName
	canaries   []types.NamespacedName
	round      int64
}

// benchDashFixture creates the teams' namespaces, services and external
// dependencies, starts the canaries and writes every Rollout's callers
// once.
func benchDashFixture(b *testing.B, kube client.Client, prefix string) *benchDash {
	ctx := context.Background()
	f := &benchDash{}
	var all []*appsv1.Deployment
	for t := range benchDashTeams {
		team := fmt.Sprintf("%s-t%d", prefix, t)
		f.teams = append(f.teams, team)
		f.namespaces = append(f.namespaces, nil)
		for n := range benchDashTeamNS {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", team, n), Labels: map[string]string{v1alpha1.LabelTeam: team}}}
			if err := kube.Create(ctx, ns); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				if err := kube.Delete(context.Background(), ns); err != nil {
					b.Errorf("delete namespace: %v", err)
				}
			})
			f.namespaces[t] = append(f.namespaces[t], ns.Name)
			for j := range benchDashServices {
				d := deployment(ns.Name, fmt.Sprintf("svc-%d", j), "example.com/svc:v1", 1)
				d.Annotations = map[string]string{v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationStepInterval: "10m"}
				if err := kube.Create(ctx, d); err != nil {
					b.Fatal(err)
				}
				all = append(all, d)
				f.rollouts = append(f.rollouts, types.NamespacedName{Namespace: ns.Name, Name: d.Name})
			}
		}
		for e := range benchDashExternals {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: f.namespaces[t][0], Name: fmt.Sprintf("ext-%d", e),
				Annotations: map[string]string{v1alpha1.AnnotationExternal: v1alpha1.ExternalGRPC}},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: fmt.Sprintf("api%d.example.com", e),
					Ports: []corev1.ServicePort{{Name: "grpc", Port: 443}}}}
			if err := kube.Create(ctx, svc); err != nil {
				b.Fatal(err)
			}
		}
	}
	rolloutPoll(b, 5*time.Minute, "100 rollouts idle", func(ctx context.Context) error {
		var list v1alpha1.RolloutList
		if err := kube.List(ctx, &list); err != nil {
			return err
		}
		idle := 0
		for _, ro := range list.Items {
			if strings.HasPrefix(ro.Namespace, prefix+"-") && ro.Status.Phase == v1alpha1.PhaseIdle {
				idle++
			}
		}
		if idle != len(all) {
			return fmt.Errorf("%d of %d idle", idle, len(all))
		}
		return nil
	})
	// Canaries spread over the teams: more status, Events and ReplicaSets
	// to read, and callers that reached the new version.
	for i := range benchDashCanaries {
		d := all[i*len(all)/benchDashCanaries]
		f.canaries = append(f.canaries, types.NamespacedName{Namespace: d.Namespace, Name: d.Name})
		rolloutPoll(b, 30*time.Second, "start a canary", func(ctx context.Context) error {
			var cur appsv1.Deployment
			if err := kube.Get(ctx, client.ObjectKeyFromObject(d), &cur); err != nil {
				return err
			}
			cur.Spec.Template.Spec.Containers[0].Image = "example.com/svc:v2"
			return kube.Update(ctx, &cur)
		})
	}
	rolloutPoll(b, 2*time.Minute, "canaries under way", func(ctx context.Context) error {
		for _, key := range f.canaries {
			var ro v1alpha1.Rollout
			if err := kube.Get(ctx, key, &ro); err != nil {
				return err
			}
			if ro.Status.CanaryRevision == "" {
				return fmt.Errorf("%s: no canary yet (%s)", key, ro.Status.Phase)
			}
		}
		return nil
	})
	if err := f.writeRound(ctx, kube, &benchWrites{}); err != nil {
		b.Fatal(err)
	}
	return f
}

// page is what the i-th open page shows: a team page, or the rollout page
// of a canary.
func (f *benchDash) page(i int) string {
	if i%2 == 0 {
		return "/api/teams/" + f.teams[(i/2)%len(f.teams)]
	}
	c := f.canaries[(i/2)%len(f.canaries)]
	return "/api/rollouts/" + c.Namespace + "/" + c.Name
}

// callersOf are the namespaces calling the i-th service: its own and one
// namespace of each of the next teams, so that every team depends on
// services of others.
func (f *benchDash) callersOf(i int, own string) []string {
	out := []string{own}
	t := i / (benchDashTeamNS * benchDashServices)
	for k := 1; k < benchDashCallers; k++ {
		other := (t + k) % benchDashTeams
		out = append(out, f.namespaces[other][i%benchDashTeamNS])
	}
	return out
}

// status is the i-th Rollout's status.callers after round: counts grow with
// every round, as the leader's do, so every write changes something.
func (f *benchDash) status(i, round int, own string, canary bool, since, now time.Time) *v1alpha1.CallerStatus {
	st := &v1alpha1.CallerStatus{Since: metav1.NewTime(since), UpdatedAt: metav1.NewTime(now),
		Window: metav1.Duration{Duration: benchDashCallersTTL}}
	for k, ns := range f.callersOf(i, own) {
		rate := int64(50 - 10*k + i%7) // requests per second
		recent := rate * int64(benchDashCallersTTL/time.Second)
		c := v1alpha1.CallerLoad{Namespace: ns, Legacy: k == benchDashCallers-1,
			Requests: recent * int64(round+1), Errors: recent * int64(round+1) / 200,
			RecentRequests: recent, RecentErrors: recent / 200}
		if canary {
			c.CanaryRequests, c.CanaryErrors = c.Requests/20, c.Errors/20
		}
		st.Callers = append(st.Callers, c)
	}
	return st
}

// writeCallers rewrites every Rollout's status.callers and each team's
// external load every benchDashCallersTTL until ctx ends.
func (f *benchDash) writeCallers(ctx context.Context, kube client.Client, w *benchWrites) {
	tick := time.NewTicker(benchDashCallersTTL)
	defer tick.Stop()
	for {
		if err := f.writeRound(ctx, kube, w); err != nil && ctx.Err() == nil {
			w.fail(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// writeRound is one round of the leader's writes: a merge patch of
// status.callers per Rollout (callers.go's patch) and one of the external
// load ConfigMap per namespace with external dependencies.
func (f *benchDash) writeRound(ctx context.Context, kube client.Client, w *benchWrites) error {
	f.round++
	round := int(f.round)
	now := time.Now()
	since := now.Add(-time.Duration(round) * benchDashCallersTTL)
	canary := map[types.NamespacedName]bool{}
	for _, c := range f.canaries {
		canary[c] = true
	}
	start := time.Now()
	for i, key := range f.rollouts {
		body, err := json.Marshal(map[string]any{"status": map[string]any{"callers": f.status(i, round, key.Namespace, canary[key], since, now)}})
		if err != nil {
			return err
		}
		ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		if err := kube.Status().Patch(ctx, ro, client.RawPatch(types.MergePatchType, body)); err != nil {
			return fmt.Errorf("patch callers of %s: %w", key, err)
		}
		w.add(1)
	}
	for t := range f.teams {
		ns := f.namespaces[t][0]
		data := map[string]string{}
		for e := range benchDashExternals {
			// The namespace's own clients call it (load reports name
			// their own namespace).
			rate := int64(20 + 5*e)
			recent := rate * int64(benchDashCallersTTL/time.Second)
			st := &v1alpha1.CallerStatus{Since: metav1.NewTime(since), UpdatedAt: metav1.NewTime(now),
				Window: metav1.Duration{Duration: benchDashCallersTTL}, Callers: []v1alpha1.CallerLoad{{Namespace: ns,
					Requests: recent * int64(round), Errors: recent * int64(round) / 100, RecentRequests: recent, RecentErrors: recent / 100}}}
			raw, err := json.Marshal(st)
			if err != nil {
				return err
			}
			data[fmt.Sprintf("ext-%d", e)] = string(raw)
		}
		body, err := json.Marshal(map[string]any{"data": data})
		if err != nil {
			return err
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v1alpha1.ExternalLoadConfigMap}, Data: data}
		err = kube.Patch(ctx, cm, client.RawPatch(types.MergePatchType, body))
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("patch external load of %s: %w", ns, err)
		}
		if err != nil {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v1alpha1.ExternalLoadConfigMap}, Data: data}
			if err := kube.Create(ctx, cm); err != nil {
				return fmt.Errorf("create external load of %s: %w", ns, err)
			}
		}
		w.add(1)
	}
	w.took(time.Since(start))
	return nil
}

// benchWrites counts the emulated leader's writes.
type benchWrites struct {
	mu     sync.Mutex
	n      int
	rounds []time.Duration
	errs   []error
}

func (w *benchWrites) add(n int) { w.mu.Lock(); w.n += n; w.mu.Unlock() }
func (w *benchWrites) took(d time.Duration) {
	w.mu.Lock()
	w.rounds = append(w.rounds, d)
	w.mu.Unlock()
}
func (w *benchWrites) fail(err error) { w.mu.Lock(); w.errs = append(w.errs, err); w.mu.Unlock() }
func (w *benchWrites) report(b *testing.B, phase string) {
	if len(w.errs) > 0 {
		b.Errorf("%s: %d rounds of writes failed, first: %v", phase, len(w.errs), w.errs[0])
	}
	sort.Slice(w.rounds, func(i, j int) bool { return w.rounds[i] < w.rounds[j] })
	var longest time.Duration
	if len(w.rounds) > 0 {
		longest = w.rounds[len(w.rounds)-1]
	}
	b.ReportMetric(float64(w.n)/benchDashWindow.Seconds(), phase+"-callers-writes/s")
	b.Logf("%s: %d writes of status.callers and external load in %d rounds (%.1f/s), the longest round %s",
		phase, w.n, len(w.rounds), float64(w.n)/benchDashWindow.Seconds(), longest)
}

// benchPolls are the pages' polls.
type benchPolls struct {
	mu       sync.Mutex
	lat      map[string][]time.Duration // by page kind
	failures []string
}

// page polls path every benchDashPoll until ctx ends, as app.js does after
// loading the page and its assets; pages open a little apart, as people
// open them.
func (p *benchPolls) page(ctx context.Context, get benchGetter, path string, i int) {
	kind := strings.Split(path, "/")[2]
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(i) * benchDashPoll / benchDashPages):
	}
	for _, asset := range []string{"/", "/static/app.js", "/static/style.css"} {
		if code, _, err := get(ctx, asset); err != nil || code != http.StatusOK {
			p.fail(fmt.Sprintf("%s: %d %v", asset, code, err))
		}
	}
	t := time.NewTicker(benchDashPoll)
	defer t.Stop()
	for {
		start := time.Now()
		code, _, err := get(ctx, path)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.lat[kind] = append(p.lat[kind], time.Since(start))
		p.mu.Unlock()
		if err != nil || code != http.StatusOK {
			p.fail(fmt.Sprintf("%s: %d %v", path, code, err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *benchPolls) fail(s string) { p.mu.Lock(); p.failures = append(p.failures, s); p.mu.Unlock() }

func (p *benchPolls) report(b *testing.B, phase string) {
	n := 0
	for kind, lat := range p.lat {
		n += len(lat)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		q := func(f float64) time.Duration { return lat[int(f*float64(len(lat)-1))] }
		b.ReportMetric(float64(q(0.5).Microseconds())/1000, phase+"-"+kind+"-p50-ms")
		b.ReportMetric(float64(q(0.99).Microseconds())/1000, phase+"-"+kind+"-p99-ms")
		b.Logf("%s: %s pages: %d polls, p50 %s, p99 %s, max %s", phase, kind, len(lat), q(0.5), q(0.99), lat[len(lat)-1])
	}
	if len(p.failures) > 0 {
		b.Errorf("%s: %d of %d requests failed, first: %s", phase, len(p.failures), n, p.failures[0])
	}
}

// benchProcess is one reading of a process: CPU seconds, resident set and
// its peak (KiB).
type benchProcess struct {
	cpu      float64
	rss, hwm int64
}

// benchReading is one reading of every process and of the API server's
// request counters.
type benchReading struct {
	at       time.Time
	procs    map[string]benchProcess
	requests map[string]float64 // "VERB resource[/subresource]" → count
	heap     int64              // the controller's heap in use, bytes
}

func benchSample(b *testing.B, pids map[string]int) benchReading {
	r := benchReading{at: time.Now(), procs: map[string]benchProcess{}}
	for name, pid := range pids {
		cpu, err := cpuSeconds(pid)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		rss, hwm, err := residentMemory(pid)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		r.procs[name] = benchProcess{cpu: cpu, rss: rss, hwm: hwm}
	}
	var err error
	if r.requests, err = apiserverRequests(); err != nil {
		b.Fatal(err)
	}
	if r.heap, err = controllerHeap(); err != nil {
		b.Fatal(err)
	}
	return r
}

// benchReport logs and reports one phase's figures.
func benchReport(b *testing.B, phase string, before, after benchReading) {
	secs := after.at.Sub(before.at).Seconds()
	names := []string{"controller", "apiserver", "dashboard", "replica"}
	for _, name := range names {
		p0, p1 := before.procs[name], after.procs[name]
		cpuPerMin := (p1.cpu - p0.cpu) * 60 / secs
		b.ReportMetric(cpuPerMin, phase+"-"+name+"-cpu-s/min")
		b.ReportMetric(float64(p1.rss)/1024, phase+"-"+name+"-rss-MiB")
		b.Logf("%s: %s CPU %.1f s/min (%.1f%% of a core), RSS %d MiB (peak so far %d MiB)",
			phase, name, cpuPerMin, 100*cpuPerMin/60, p1.rss/1024, p1.hwm/1024)
	}
	b.ReportMetric(float64(after.heap)/(1<<20), phase+"-controller-heap-MiB")
	b.Logf("%s: controller heap in use %d MiB", phase, after.heap>>20)
	var reads, writes float64
	type rate struct {
		what string
		n    float64
	}
	var rates []rate
	for k, n := range after.requests {
		d := n - before.requests[k]
		if d <= 0 {
			continue
		}
		verb := strings.Fields(k)[0]
		switch verb {
		case "GET", "LIST", "WATCH":
			reads += d
		default:
			writes += d
		}
		rates = append(rates, rate{k, d / secs})
	}
	sort.Slice(rates, func(i, j int) bool { return rates[i].n > rates[j].n })
	var top []string
	for i := 0; i < len(rates) && i < 12; i++ {
		top = append(top, fmt.Sprintf("%s %.2f/s", rates[i].what, rates[i].n))
	}
	b.ReportMetric(reads/secs, phase+"-apiserver-reads/s")
	b.ReportMetric(writes/secs, phase+"-apiserver-writes/s")
	b.Logf("%s: API server %.1f reads/s, %.1f writes/s; most: %s", phase, reads/secs, writes/secs, strings.Join(top, ", "))
}

// apiserverRequestLine matches a line of apiserver_request_total.
var apiserverRequestLine = regexp.MustCompile(`^apiserver_request_total\{(.*)\} (\S+)$`)
var labelPair = regexp.MustCompile(`(\w+)="([^"]*)"`)

// apiserverRequests reads the API server's request counters by verb and
// resource.
func apiserverRequests() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := env.Client().CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the API server's metrics: %w", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		m := apiserverRequestLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[1], -1) {
			labels[p[1]] = p[2]
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("apiserver_request_total: %q: %w", line, err)
		}
		what := labels["verb"] + " " + labels["resource"]
		if labels["subresource"] != "" {
			what += "/" + labels["subresource"]
		}
		out[what] += v
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the API server's metrics hold no apiserver_request_total")
	}
	return out, nil
}

// controllerHeap reads the controller's heap in use from its pprof
// endpoint (the runtime's MemStats at the end of the heap profile).
func controllerHeap() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, body, err := httpGet(ctx, sluice.PprofURL+"/heap?debug=1")
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("controller heap profile: %d %v", code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapInuse = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("controller heap profile: no HeapInuse")
}

// benchGetJSON decodes the JSON answer of a GET into v.
func benchGetJSON(ctx context.Context, get benchGetter, path string, v any) error {
	code, body, err := get(ctx, path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	return json.Unmarshal([]byte(body), v)
}

// cpuSeconds is the user+system CPU time of a process (Linux /proc).
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks, nil
}

// residentMemory is the resident set and its peak, in KiB (Linux /proc).
func residentMemory(pid int) (rss, hwm int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, perr := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss, err = v, perr
		case "VmHWM:":
			hwm, err = v, perr
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return rss, hwm, nil
}
