package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sluice-dev/sluice/internal/cachedir"
	"github.com/sluice-dev/sluice/internal/loopback"
	"github.com/sluice-dev/sluice/local/podruntime"
)

// NodeName is the name of the one simulated node.
const NodeName = "sluice-node-0"

// Options configure a local cluster.
type Options struct {
	// Dir holds the cluster's credentials, data and logs. It is created if
	// missing and emptied first.
	Dir string
	// Progress receives one line per step (building, starting, ready).
	Progress io.Writer
	// Log is used by the pod runtime.
	Log logr.Logger
}

// Cluster is a running local cluster.
type Cluster struct {
	dir        string
	kubeconfig string
	podCIDR    string
	restConfig *rest.Config
	client     kubernetes.Interface
	procs      []*Process
	release    func() // releases the pod CIDR reservation
	runtime    *podruntime.Runtime
	stopPods   context.CancelFunc
	podsDone   chan error
	stopOnce   sync.Once
}

// Start builds (first time only) and starts a local cluster, and returns once
// the apiserver is ready and the node is Ready. On error everything started
// so far is stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	bins, err := EnsureBinaries(ctx, progress)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(opts.Dir); err != nil {
		return nil, fmt.Errorf("clean cluster dir: %w", err)
	}
	for _, d := range []string{"pki", "etcd", "logs"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create cluster dir: %w", err)
		}
	}
	c := &Cluster{dir: opts.Dir, kubeconfig: filepath.Join(opts.Dir, "kubeconfig")}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	cidr, release, err := reservePodCIDR()
	if err != nil {
		return nil, err
	}
	c.podCIDR, c.release = cidr, release
	pki, err := newPKI(filepath.Join(opts.Dir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("generate cluster credentials: %w", err)
	}
	ports, err := loopback.FreePorts(7)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kwokPort, kwokNodePort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := writeKubeconfig(c.kubeconfig, server, pki); err != nil {
		return nil, err
	}
	c.restConfig, err = clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	c.restConfig.QPS, c.restConfig.Burst = -1, -1 // local and ours alone: no client-side throttling
	c.client, err = kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}

	start := time.Now()
	logs := filepath.Join(opts.Dir, "logs")
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := c.start("etcd", bins.Etcd, logs,
		"--name=default",
		"--data-dir="+filepath.Join(opts.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return nil, err
	}
	if err := c.start("kube-apiserver", bins.APIServer, logs,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--endpoint-reconciler-type=none",
		"--tls-cert-file="+pki.ServingCert, "--tls-private-key-file="+pki.ServingKey,
		"--client-ca-file="+pki.CACert,
		"--service-account-key-file="+pki.SAPub, "--service-account-signing-key-file="+pki.SAKey,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir="+filepath.Join(opts.Dir, "pki"),
	); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "sluice: waiting for kube-apiserver at %s\n", server)
	readyCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := WaitFor(readyCtx, "kube-apiserver ready", c.procs, func(ctx context.Context) (bool, error) {
		body, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", err
	}); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "sluice: kube-apiserver ready after %s\n", time.Since(start).Round(time.Millisecond))

	if err := c.start("kube-controller-manager", bins.ControllerManager, logs,
		"--kubeconfig="+c.kubeconfig,
		"--authentication-kubeconfig="+c.kubeconfig, "--authorization-kubeconfig="+c.kubeconfig,
		"--controllers=*,-serviceaccount-token",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file="+pki.SAKey,
		"--root-ca-file="+pki.CACert,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(kcmPort),
		"--cert-dir="+filepath.Join(opts.Dir, "pki"),
	); err != nil {
		return nil, err
	}
	if err := c.start("kube-scheduler", bins.Scheduler, logs,
		"--kubeconfig="+c.kubeconfig,
		"--authentication-kubeconfig="+c.kubeconfig, "--authorization-kubeconfig="+c.kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort),
		"--cert-dir="+filepath.Join(opts.Dir, "pki"),
	); err != nil {
		return nil, err
	}
	if err := writeStages(bins.Stages, stagesPath(opts.Dir)); err != nil {
		return nil, err
	}
	if err := c.start("kwok", bins.Kwok, logs,
		"--kubeconfig="+c.kubeconfig,
		"--config="+stagesPath(opts.Dir),
		"--manage-all-nodes=true",
		"--cidr="+c.podCIDR,
		"--node-ip=127.0.0.1",
		"--node-port="+strconv.Itoa(kwokNodePort),
		"--server-address=127.0.0.1:"+strconv.Itoa(kwokPort),
	); err != nil {
		return nil, err
	}
	if err := c.createNode(readyCtx); err != nil {
		return nil, err
	}
	if err := WaitFor(readyCtx, "node "+NodeName+" Ready", c.procs, c.nodeReady); err != nil {
		return nil, err
	}
	if err := WaitFor(readyCtx, "default service account", c.procs, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	}); err != nil {
		return nil, err
	}

	podsCtx, stopPods := context.WithCancel(context.Background())
	c.stopPods, c.podsDone = stopPods, make(chan error, 1)
	c.runtime = podruntime.New(c.client, podruntime.Options{Log: opts.Log})
	go func() { c.podsDone <- c.runtime.Run(podsCtx) }()
	fmt.Fprintf(progress, "sluice: local cluster ready in %s (pod CIDR %s)\n", time.Since(start).Round(time.Millisecond), c.podCIDR)
	return c, nil
}

func (c *Cluster) start(name, bin, logs string, args ...string) error {
	p, err := StartProcess(name, bin, args, filepath.Join(logs, name+".log"))
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	return nil
}

func (c *Cluster) createNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        NodeName,
		Labels:      map[string]string{corev1.LabelHostname: NodeName, "type": "kwok"},
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
	}}
	if _, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node: %w", err)
	}
	return nil
}

func (c *Cluster) nodeReady(ctx context.Context) (bool, error) {
	n, err := c.client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			return true, nil
		}
	}
	return false, nil
}

// Kubeconfig is the path of an admin kubeconfig for the cluster.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// RESTConfig returns a copy of the admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Client is an admin clientset.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// PodRuntime is the runtime serving the cluster's pods.
func (c *Cluster) PodRuntime() *podruntime.Runtime { return c.runtime }

// PodCIDR is the loopback range pod IPs come from.
func (c *Cluster) PodCIDR() string { return c.podCIDR }

// Dir is the cluster's working directory (credentials, logs).
func (c *Cluster) Dir() string { return c.dir }

// Err reports the first component that has exited, if any.
func (c *Cluster) Err() error {
	for _, p := range c.procs {
		if ok, err := p.Exited(); ok {
			return err
		}
	}
	return nil
}

// Stop stops the pod runtime and every component, newest first, and waits
// for them to exit. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		if c.stopPods != nil {
			c.stopPods()
			if err := <-c.podsDone; err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "sluice: pod runtime: %v\n", err)
			}
		}
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].Stop(10 * time.Second)
		}
		if c.release != nil {
			c.release()
		}
	})
}

func writeKubeconfig(path, server string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sluice"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	cfg.Contexts["sluice"] = &clientcmdapi.Context{Cluster: "sluice", AuthInfo: "admin", Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = "sluice"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// reservePodCIDR picks a 127.X.0.0/16 no other local cluster on this machine
// uses, so that clusters started side by side (tests and `sluice dev`) never
// hand out the same pod IP. The reservation is a file lock, released by the
// returned func or when the process dies.
func reservePodCIDR() (string, func(), error) {
	cache, err := cachedir.Dir()
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(cache, "pod-cidrs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("create %s: %w", dir, err)
	}
	for x := 100; x < 250; x++ {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(x)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return "", nil, fmt.Errorf("reserve pod CIDR: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return fmt.Sprintf("127.%d.0.0/16", x), func() { f.Close() }, nil
	}
	return "", nil, errors.New("reserve pod CIDR: all of 127.100-249.0.0/16 are in use by other local clusters")
}
