package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/sluice-dev/sluice/xds/auth"
)

// result is what a client reports for a batch of RPCs.
type result struct {
	// Tracks counts answers by the response's hostname: the track of the
	// in-process backends, the pod name on the local cluster.
	Tracks map[string]int `json:"tracks"`
	// Versions counts answers by server_id, the pod's image tag, when set.
	Versions map[string]int `json:"versions"`
	Errors   map[string]int `json:"errors"`
	// Failures counts failed RPCs by "<code>: <details>".
	Failures map[string]int `json:"failures"`
	Messages []string       `json:"messages"`
}

func (r result) total() int {
	n := 0
	for _, c := range r.Tracks {
		n += c
	}
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// client is a proxyless xDS client under test.
type client interface {
	// Name is the implementation and version, as the client reports it.
	Name() string
	// Send starts a batch of n sequential RPCs carrying md; Recv returns
	// its result. A batch can be in flight while the test publishes.
	Send(n int, md map[string]string) error
	Recv() (result, error)
}

// bootstrapConfig is what an xDS bootstrap file says. Channel credentials
// are a list so that TLS (and call credentials) can be added for clients
// that support them; here every client speaks to a legacy (plaintext)
// listener and names its namespace in node metadata.
type bootstrapConfig struct {
	ServerURI    string
	NodeID       string
	ChannelCreds []map[string]any
	// Namespace is claimed in node metadata; default the in-process
	// harness's.
	Namespace string
}

// bootstrap renders the gRFC A27 bootstrap JSON every client here reads.
func bootstrap(c bootstrapConfig) []byte {
	ns := c.Namespace
	if ns == "" {
		ns = namespace
	}
	creds := c.ChannelCreds
	if len(creds) == 0 {
		creds = []map[string]any{{"type": "insecure"}}
	}
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      c.ServerURI,
			"channel_creds":   creds,
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": c.NodeID, "locality": map[string]any{"zone": "interop"},
			"metadata": map[string]any{auth.NodeNamespaceKey: ns}},
	})
	if err != nil {
		panic(err) // maps of strings always encode
	}
	return b
}

// procClient is a client process speaking the stdin/stdout protocol.
type procClient struct {
	name string
	in   io.WriteCloser
	out  *bufio.Scanner
}

func (p *procClient) Name() string { return p.name }

func (p *procClient) Send(n int, md map[string]string) error {
	b, err := json.Marshal(map[string]any{"n": n, "md": md})
	if err != nil {
		return err
	}
	_, err = p.in.Write(append(b, '\n'))
	return err
}

func (p *procClient) Recv() (result, error) {
	if !p.out.Scan() {
		return result{}, fmt.Errorf("%s: no answer (exited?): %v", p.name, p.out.Err())
	}
	var r result
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
		return result{}, fmt.Errorf("%s: bad answer %q: %w", p.name, p.out.Text(), err)
	}
	return r, nil
}

// startProc starts a client program with a bootstrap for node and reads
// its name. Its stderr goes to the test log.
func startProc(t *testing.T, env []string, bs []byte, target string, argv ...string) *procClient {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, bs, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], target)...)
	cmd.Env = append(append(os.Environ(), env...), "GRPC_XDS_BOOTSTRAP="+path)
	cmd.Stderr = &logWriter{t: t, prefix: filepath.Base(argv[len(argv)-1])}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }() //nolint:errcheck // killed below if it hangs
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	p := &procClient{in: in, out: bufio.NewScanner(out)}
	p.out.Buffer(make([]byte, 1<<20), 1<<20)
	if !p.out.Scan() {
		t.Fatalf("%v printed nothing: %v", argv, p.out.Err())
	}
	var id struct{ Client, Version string }
	if err := json.Unmarshal(p.out.Bytes(), &id); err != nil {
		t.Fatalf("%v: bad first line %q: %v", argv, p.out.Text(), err)
	}
	p.name = id.Client + " " + id.Version
	return p
}

// logWriter sends a process's stderr to the test log, line by line.
type logWriter struct {
	t      *testing.T
	prefix string
}

func (w *logWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Logf("%s: %s", w.prefix, l)
	}
	return len(b), nil
}

// goClient is the grpc-go release this module pins, in process.
type goClient struct {
	c       testgrpc.TestServiceClient
	results chan result
}

func startGo(t *testing.T, bs []byte, target string) *goClient {
	t.Helper()
	rb, err := xds.NewXDSResolverWithConfigForTesting(bs)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &goClient{c: testgrpc.NewTestServiceClient(conn), results: make(chan result, 1)}
}

func (g *goClient) Name() string { return "grpc-go v" + grpc.Version + " (module's own)" }

func (g *goClient) Send(n int, md map[string]string) error {
	var kv []string
	for k, v := range md {
		kv = append(kv, k, v)
	}
	go func() {
		r := result{Tracks: map[string]int{}, Versions: map[string]int{}, Errors: map[string]int{}, Failures: map[string]int{}}
		for range n {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), kv...), 10*time.Second)
			resp, err := g.c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			cancel()
			if err != nil {
				code := strings.ToUpper(status.Code(err).String())
				r.Errors[code]++
				r.Failures[code+": "+status.Convert(err).Message()]++
				if len(r.Messages) < 3 {
					r.Messages = append(r.Messages, err.Error())
				}
				continue
			}
			r.Tracks[resp.GetHostname()]++
			if v := resp.GetServerId(); v != "" {
				r.Versions[v]++
			}
		}
		g.results <- r
	}()
	return nil
}

func (g *goClient) Recv() (result, error) { return <-g.results, nil }
