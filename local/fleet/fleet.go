// Package fleet runs several replicas of the Sluice controller as separate
// processes on loopback, each with ports of its own, electing a leader and
// talking to each other over their peer listeners, with one address in
// front of their xDS and webhook ports as a Service would be. `sluice dev
// --replicas N` runs one so a person can kill a replica and watch; the chaos
// tests run one to kill, pause and restart replicas under traffic.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"github.com/sluice-dev/sluice/internal/loopback"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-dev/sluice/local/cluster"
)

// Options configure a fleet.
type Options struct {
	// Binary is the sluice executable.
	Binary string
	// Kubeconfig reaches the cluster.
	Kubeconfig string
	// Dir receives each replica's log, <name>-<start>.log.
	Dir string
	// Replicas is how many controllers run; at least 1.
	Replicas int
	// Namespace is Sluice's own (lease, certificate Secret).
	Namespace string
	// Args are added to every replica's command line (e.g. lease timings,
	// --xds-legacy-all-namespaces).
	Args []string
}

// Replica is one controller process and its ports, all on 127.0.0.1.
type Replica struct {
	Name                       string
	XDS, Legacy, Peer, Webhook int
	Metrics, Health            int
	args                       []string
	logDir                     string
	bin                        string
	proc                       *cluster.Process
	starts                     int
}

// Fleet is the replicas and the fronts of their xDS and webhook ports.
type Fleet struct {
	Replicas []*Replica
	// XDS and Webhook are single addresses in front of every replica.
	XDS, Webhook *Front
}

// New allocates ports for the replicas and opens the fronts; Start starts
// the processes.
func New(opts Options) (*Fleet, error) {
	if opts.Replicas < 1 {
		return nil, fmt.Errorf("replicas %d: want at least 1", opts.Replicas)
	}
	f := &Fleet{}
	var peers, xds, hooks []string
	for i := range opts.Replicas {
		ports, err := loopback.FreePorts(6)
		if err != nil {
			return nil, err
		}
		r := &Replica{Name: fmt.Sprintf("sluice-%d", i), XDS: ports[0], Legacy: ports[1], Peer: ports[2], Webhook: ports[3], Metrics: ports[4], Health: ports[5],
			logDir: opts.Dir, bin: opts.Binary}
		f.Replicas = append(f.Replicas, r)
		peers = append(peers, loopbackAddr(r.Peer))
		xds = append(xds, loopbackAddr(r.XDS))
		hooks = append(hooks, loopbackAddr(r.Webhook))
	}
	for _, r := range f.Replicas {
		r.args = append([]string{"controller",
			"--kubeconfig=" + opts.Kubeconfig,
			"--namespace=" + opts.Namespace,
			"--replica-name=" + r.Name,
			"--leader-elect",
			"--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(r.Webhook),
			"--cert-ips=127.0.0.1",
			"--xds-host=127.0.0.1", "--xds-port=" + strconv.Itoa(r.XDS),
			"--xds-legacy-port=" + strconv.Itoa(r.Legacy),
			"--peer-port=" + strconv.Itoa(r.Peer), "--pod-ip=127.0.0.1",
			"--peers=" + strings.Join(peers, ","),
			"--metrics-addr=" + loopbackAddr(r.Metrics),
			"--health-addr=" + loopbackAddr(r.Health),
		}, opts.Args...)
	}
	var err error
	if f.XDS, err = NewFront(xds); err != nil {
		return nil, err
	}
	if f.Webhook, err = NewFront(hooks); err != nil {
		f.XDS.Close()
		return nil, err
	}
	return f, nil
}

// Start starts every replica and waits until each is ready.
func (f *Fleet) Start(ctx context.Context) error {
	for _, r := range f.Replicas {
		if err := r.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops every replica and closes the fronts.
func (f *Fleet) Stop() {
	for _, r := range f.Replicas {
		r.Stop()
	}
	f.XDS.Close()
	f.Webhook.Close()
}

// Leader returns the replica that says it leads now (sluice_leader 1), or
// an error naming what each said.
func (f *Fleet) Leader(ctx context.Context) (*Replica, error) {
	var said []string
	for _, r := range f.Replicas {
		if !r.Running() {
			said = append(said, r.Name+": not running")
			continue
		}
		v, err := r.Metric(ctx, "sluice_leader")
		if err != nil {
			said = append(said, r.Name+": "+err.Error())
			continue
		}
		if v == 1 {
			return r, nil
		}
		said = append(said, r.Name+": not leading")
	}
	return nil, fmt.Errorf("no replica leads (%s)", strings.Join(said, "; "))
}

// Start starts the replica's process and waits until it is ready.
func (r *Replica) Start(ctx context.Context) error {
	r.starts++
	p, err := cluster.StartProcess(r.Name, r.bin, r.args, filepath.Join(r.logDir, fmt.Sprintf("%s-%d.log", r.Name, r.starts)))
	if err != nil {
		return err
	}
	r.proc = p
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return cluster.WaitFor(ctx, r.Name+" ready", []*cluster.Process{p}, func(ctx context.Context) (bool, error) {
		return get(ctx, r.HealthURL()+"/readyz") == nil, nil
	})
}

// Args are the replica's command line, without the binary.
func (r *Replica) Args() []string { return append([]string(nil), r.args...) }

// Pid is the process id, 0 when not started.
func (r *Replica) Pid() int {
	if r.proc == nil {
		return 0
	}
	return r.proc.Pid()
}

// Running reports whether the process was started and has not ended.
func (r *Replica) Running() bool {
	if r.proc == nil {
		return false
	}
	exited, _ := r.proc.Exited()
	return !exited
}

// Kill ends the process at once, as a crash or an OOM kill would.
func (r *Replica) Kill() { r.proc.Kill() }

// Stop stops the process gracefully.
func (r *Replica) Stop() {
	if r.proc != nil {
		r.proc.Stop(10 * time.Second)
	}
}

// Pause stops the process (SIGSTOP), as a hung node would; Resume resumes it.
func (r *Replica) Pause() error { return r.proc.Signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (r *Replica) Resume() error { return r.proc.Signal(syscall.SIGCONT) }

// Logs returns the last lines of the current log.
func (r *Replica) Logs(lines int) string { return r.proc.LogTail(lines) }

// XDSAddr is the replica's own xDS address (TLS).
func (r *Replica) XDSAddr() string { return loopbackAddr(r.XDS) }

// HealthURL serves /healthz and /readyz.
func (r *Replica) HealthURL() string { return "http://" + loopbackAddr(r.Health) }

// MetricsURL serves the Prometheus metrics.
func (r *Replica) MetricsURL() string { return "http://" + loopbackAddr(r.Metrics) + "/metrics" }

// Metric sums the samples of a metric family on the replica's /metrics.
func (r *Replica) Metric(ctx context.Context, family string) (float64, error) {
	return scrape(ctx, r.MetricsURL(), family)
}

func loopbackAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
