package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/sluice-dev/sluice/internal/cachedir"
)

// Versions of the upstream components the local cluster is built from.
const (
	KubernetesVersion = "v1.37.2"
	// StagingVersion is the published version of every k8s.io staging module
	// that matches KubernetesVersion.
	StagingVersion = "v0.37.2"
	EtcdVersion    = "v3.7.0"
	KwokVersion    = "v0.8.0"
)

const (
	kubernetesModule = "k8s.io/kubernetes"
	etcdModule       = "go.etcd.io/etcd/server/v3"
	kwokModule       = "sigs.k8s.io/kwok"
)

// Binaries are the paths of the built cluster components.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kwok string
	// Stages is a kwok configuration file holding the node and pod lifecycle
	// stages.
	Stages string
}

// EnsureBinaries returns the cluster binaries, building them on first use.
// A first build takes minutes; it reports what it is doing to progress.
// Concurrent callers (several test processes) build once: the others wait on
// a file lock.
func EnsureBinaries(ctx context.Context, progress io.Writer) (*Binaries, error) {
	cache, err := cachedir.Dir()
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("k8s-%s_etcd-%s_kwok-%s", KubernetesVersion, EtcdVersion, KwokVersion)
	dir := filepath.Join(cache, "cluster", key)
	bins := &Binaries{
		Etcd:              filepath.Join(dir, "bin", "etcd"),
		APIServer:         filepath.Join(dir, "bin", "kube-apiserver"),
		ControllerManager: filepath.Join(dir, "bin", "kube-controller-manager"),
		Scheduler:         filepath.Join(dir, "bin", "kube-scheduler"),
		Kwok:              filepath.Join(dir, "bin", "kwok"),
		Stages:            filepath.Join(dir, "kwok-stages.yaml"),
	}
	if bins.complete() {
		return bins, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache directory: %w", err)
	}
	unlock, err := cachedir.Lock(ctx, dir+".lock", func() {
		fmt.Fprintf(progress, "sluice: waiting for another process building the cluster binaries (%s.lock)\n", dir)
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	if bins.complete() { // built by another process while we waited
		return bins, nil
	}
	start := time.Now()
	fmt.Fprintf(progress, "sluice: building the local cluster binaries into %s (first run only; several minutes on 2 cores)\n", dir)
	b := builder{dir: dir, progress: progress}
	if err := b.buildKubernetes(ctx, bins); err != nil {
		return nil, err
	}
	if err := b.buildKwok(ctx, bins); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "sluice: cluster binaries ready in %s\n", time.Since(start).Round(time.Second))
	return bins, nil
}

func (b *Binaries) complete() bool {
	for _, p := range []string{b.Etcd, b.APIServer, b.ControllerManager, b.Scheduler, b.Kwok, b.Stages} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

type builder struct {
	dir      string
	progress io.Writer
}

// buildKubernetes builds etcd and the Kubernetes control plane in a helper
// module that requires k8s.io/kubernetes and pins every staging module it
// replaces with a local path to its published version.
func (b builder) buildKubernetes(ctx context.Context, bins *Binaries) error {
	mod := filepath.Join(b.dir, "kubernetes-build")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return fmt.Errorf("create helper module: %w", err)
	}
	fmt.Fprintf(b.progress, "sluice: resolving %s@%s\n", kubernetesModule, KubernetesVersion)
	info, err := b.download(ctx, mod, kubernetesModule+"@"+KubernetesVersion)
	if err != nil {
		return err
	}
	upstream, err := os.ReadFile(info.GoMod)
	if err != nil {
		return fmt.Errorf("read %s go.mod: %w", kubernetesModule, err)
	}
	gomod, err := helperGoMod(upstream)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), gomod, 0o644); err != nil {
		return fmt.Errorf("write helper go.mod: %w", err)
	}
	tools := "//go:build tools\n\n// Package tools pins the commands this module builds.\npackage tools\n\nimport (\n" +
		"\t_ \"go.etcd.io/etcd/server/v3\"\n" +
		"\t_ \"k8s.io/kubernetes/cmd/kube-apiserver\"\n" +
		"\t_ \"k8s.io/kubernetes/cmd/kube-controller-manager\"\n" +
		"\t_ \"k8s.io/kubernetes/cmd/kube-scheduler\"\n)\n"
	if err := os.WriteFile(filepath.Join(mod, "tools.go"), []byte(tools), 0o644); err != nil {
		return fmt.Errorf("write helper tools.go: %w", err)
	}
	fmt.Fprintln(b.progress, "sluice: downloading Kubernetes and etcd modules")
	if err := b.goCmd(ctx, mod, "modules", "mod", "tidy"); err != nil {
		return err
	}
	ldflags := versionLDFlags()
	out := filepath.Join(b.dir, "build-out")
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("clean build output: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create build output: %w", err)
	}
	fmt.Fprintln(b.progress, "sluice: compiling etcd, kube-apiserver, kube-controller-manager, kube-scheduler")
	if err := b.goCmd(ctx, mod, "kubernetes", "build", "-v", "-ldflags", ldflags, "-o", out+string(filepath.Separator),
		etcdModule,
		kubernetesModule+"/cmd/kube-apiserver",
		kubernetesModule+"/cmd/kube-controller-manager",
		kubernetesModule+"/cmd/kube-scheduler",
	); err != nil {
		return err
	}
	// go build names the etcd main package "server" after its path.
	moves := map[string]string{
		"server":                  bins.Etcd,
		"kube-apiserver":          bins.APIServer,
		"kube-controller-manager": bins.ControllerManager,
		"kube-scheduler":          bins.Scheduler,
	}
	if err := os.MkdirAll(filepath.Dir(bins.Etcd), 0o755); err != nil {
		return fmt.Errorf("create bin directory: %w", err)
	}
	for from, to := range moves {
		if err := os.Rename(filepath.Join(out, from), to); err != nil {
			return fmt.Errorf("install %s: %w", filepath.Base(to), err)
		}
	}
	return os.RemoveAll(out)
}

// helperGoMod writes the go.mod of the helper module from the go.mod of
// k8s.io/kubernetes: every module it replaces with a local staging path is
// replaced with the published StagingVersion instead.
func helperGoMod(upstream []byte) ([]byte, error) {
	f, err := modfile.Parse("go.mod", upstream, nil)
	if err != nil {
		return nil, fmt.Errorf("parse %s go.mod: %w", kubernetesModule, err)
	}
	var staging []string
	for _, r := range f.Replace {
		if modfile.IsDirectoryPath(r.New.Path) {
			staging = append(staging, r.Old.Path)
		}
	}
	if len(staging) == 0 {
		return nil, fmt.Errorf("%s@%s go.mod replaces no staging modules: cannot pin them", kubernetesModule, KubernetesVersion)
	}
	out := &modfile.File{}
	if err := out.AddModuleStmt("sluice.dev/local-cluster-build"); err != nil {
		return nil, err
	}
	if err := out.AddGoStmt("1.26.0"); err != nil {
		return nil, err
	}
	out.AddNewRequire(kubernetesModule, KubernetesVersion, false)
	out.AddNewRequire(etcdModule, EtcdVersion, false)
	for _, p := range staging {
		if err := out.AddReplace(p, "", p, StagingVersion); err != nil {
			return nil, fmt.Errorf("pin %s: %w", p, err)
		}
	}
	out.Cleanup()
	return out.Format()
}

// versionLDFlags makes the components report a real version, which clients
// such as kubectl parse.
func versionLDFlags() string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(KubernetesVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	vars := map[string]string{
		"gitVersion":   KubernetesVersion,
		"gitMajor":     major,
		"gitMinor":     minor,
		"gitCommit":    "0000000000000000000000000000000000000000",
		"gitTreeState": "clean",
		"buildDate":    "1970-01-01T00:00:00Z",
	}
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for k, v := range vars {
			flags = append(flags, fmt.Sprintf("-X %s.%s=%s", pkg, k, v))
		}
	}
	return strings.Join(flags, " ")
}

// buildKwok installs kwok at its own module versions and collects its
// node and pod lifecycle stages into one configuration file.
func (b builder) buildKwok(ctx context.Context, bins *Binaries) error {
	fmt.Fprintf(b.progress, "sluice: building kwok %s\n", KwokVersion)
	gobin := filepath.Join(b.dir, "kwok-build")
	if err := os.MkdirAll(gobin, 0o755); err != nil {
		return fmt.Errorf("create kwok build dir: %w", err)
	}
	cmd := b.command(ctx, b.dir, "install", "-v", kwokModule+"/cmd/kwok@"+KwokVersion)
	cmd.Env = append(cmd.Env, "GOBIN="+gobin)
	if err := b.run(cmd, "kwok"); err != nil {
		return err
	}
	info, err := b.download(ctx, b.dir, kwokModule+"@"+KwokVersion)
	if err != nil {
		return err
	}
	var stages bytes.Buffer
	for _, f := range []string{
		"kustomize/stage/node/fast/node-initialize.yaml",
		"kustomize/stage/node/heartbeat/node-heartbeat.yaml",
		"kustomize/stage/pod/fast/pod-ready.yaml",
		"kustomize/stage/pod/fast/pod-complete.yaml",
		"kustomize/stage/pod/fast/pod-delete.yaml",
	} {
		data, err := os.ReadFile(filepath.Join(info.Dir, f))
		if err != nil {
			return fmt.Errorf("read kwok stage: %w", err)
		}
		stages.WriteString("---\n")
		stages.Write(data)
		stages.WriteString("\n")
	}
	if err := os.WriteFile(bins.Stages, stages.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write kwok stages: %w", err)
	}
	if err := os.Rename(filepath.Join(gobin, "kwok"), bins.Kwok); err != nil {
		return fmt.Errorf("install kwok: %w", err)
	}
	return nil
}

type moduleInfo struct {
	Dir, GoMod, Error string
}

func (b builder) download(ctx context.Context, dir, module string) (*moduleInfo, error) {
	cmd := b.command(ctx, dir, "mod", "download", "-json", module)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go mod download %s: %w: %s%s", module, err, stderr.String(), out.String())
	}
	var info moduleInfo
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		return nil, fmt.Errorf("go mod download %s: decode: %w", module, err)
	}
	if info.Error != "" {
		return nil, fmt.Errorf("go mod download %s: %s", module, info.Error)
	}
	return &info, nil
}

func (b builder) command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	return cmd
}

func (b builder) goCmd(ctx context.Context, dir, what string, args ...string) error {
	return b.run(b.command(ctx, dir, args...), what)
}

// run runs a go command, reporting every 15 s how many packages it has
// compiled (go build -v prints one line per package).
func (b builder) run(cmd *exec.Cmd, what string) error {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = cmd.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(cmd.Args[1:], " "), err)
	}
	var lines atomic.Int64
	tail := newTail(40)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			lines.Add(1)
			tail.add(sc.Text())
		}
	}()
	ticker := time.NewTicker(15 * time.Second)
	defer ticker.Stop()
	waitErr := make(chan error, 1)
	go func() { <-done; waitErr <- cmd.Wait() }()
	for {
		select {
		case err := <-waitErr:
			if err != nil {
				return fmt.Errorf("go %s (%s): %w\n%s", cmd.Args[1], what, err, tail.String())
			}
			fmt.Fprintf(b.progress, "sluice: %s done in %s\n", what, time.Since(start).Round(time.Second))
			return nil
		case <-ticker.C:
			fmt.Fprintf(b.progress, "sluice: %s: %d packages so far, %s elapsed\n", what, lines.Load(), time.Since(start).Round(time.Second))
		}
	}
}
