package e2e

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/charts"
	"github.com/sluice-dev/sluice/internal/image"
	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/webhook"
	"github.com/sluice-dev/sluice/xds/auth"
)

// serviceAccountDir is where the kubelet mounts a pod's ServiceAccount
// token, CA and namespace, read by in-cluster client configuration.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// TestImageRunsAsController builds the image as `make image` does (twice:
// the digests must match), unpacks the host platform's image with the same
// library into a root filesystem, and runs the binary at its entrypoint
// chrooted there, as the image's user, under the chart's ServiceAccount and
// RBAC with in-cluster configuration (the token, CA and namespace files the
// kubelet mounts, and the Service environment variables). Inside, only the
// image's files exist: no host CA certificates, no zone database, no shell,
// and only /tmp is writable, as the chart mounts it. The controller must
// become ready, admit (mutate) a Deployment the API server sends it, answer
// an ADS request, and evaluate a freeze window in Europe/Paris, whose zone
// data only the binary carries.
//
// Like TestChartRBACRunsController it is not parallel: its controller leads
// its own Lease, and its webhooks are narrowed to a namespace of this test
// (the DeploymentPolicy webhook sees every policy while it runs).
func TestImageRunsAsController(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chroots into the unpacked image and switches to its user: it must run as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cs := env.Client()

	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	first := buildImage(ctx, t, filepath.Join(t.TempDir(), "layout"), platform)
	second := buildImage(ctx, t, filepath.Join(t.TempDir(), "layout"), platform)
	d1, d2 := indexDigest(t, first), indexDigest(t, second)
	if d1 != d2 {
		t.Errorf("two builds of the same source gave %s and %s", d1, d2)
	}
	img, err := image.PlatformImage(first, platform)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := imageUser(t, cf.Config.User)
	if len(cf.Config.Entrypoint) != 1 {
		t.Fatalf("entrypoint %v, want the binary alone", cf.Config.Entrypoint)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := image.Unpack(img, root); err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s (index %s) unpacked; user %d:%d, entrypoint %v", platform.String(), d1, uid, gid, cf.Config.Entrypoint)

	// The chart runs this image: its user, arguments and ports must be the
	// image's.
	releaseNS := newNamespace(t, nil)
	teamNS := newNamespace(t, map[string]string{"image-e2e": releaseNS, v1alpha1.LabelTeam: "payments"})
	objs := renderChart(t, charts.TemplateOptions{
		Release:   "image",
		Namespace: releaseNS,
		Set:       []string{"webhooks.namespaceSelector.matchLabels.image-e2e=" + releaseNS},
	})
	picked := chartObjects(t, objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"Deployment", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
	checkChartMatchesImage(t, picked["Deployment"].Object, cf)
	fullname := picked["ServiceAccount"].GetName()

	ports := loopbackPorts(t, 4)
	a := newApplier(t)
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		u := picked[kind]
		if strings.HasSuffix(kind, "WebhookConfiguration") {
			pointWebhooksAt(t, u, "https://127.0.0.1:"+strconv.Itoa(ports[0]), nil)
		}
		if _, err := a.apply(ctx, u, false); err != nil {
			t.Fatalf("apply %s: %v", describe(u), err)
		}
		if u.GetNamespace() == "" {
			t.Cleanup(func() {
				res, err := a.resource(u)
				if err == nil {
					err = res.Delete(context.Background(), u.GetName(), metav1.DeleteOptions{})
				}
				if err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("delete %s: %v", describe(u), err)
				}
			})
		}
	}

	// What the kubelet gives the pod: the ServiceAccount mount and the
	// kubernetes Service's environment.
	mountServiceAccount(ctx, t, root, releaseNS, fullname)
	apiserver, err := url.Parse(env.RESTConfig().Host)
	if err != nil {
		t.Fatal(err)
	}
	checkRootFS(t, root, uid)

	args := controllerArgs(t, picked["Deployment"], "", ports)
	args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--kubeconfig=") })
	// Plain-HTTP metrics for this test's reads; TestChartRBACRunsController covers the chart's authenticated ones.
	args = append(args, "--metrics-secure=false")
	cmd := exec.Command(cf.Config.Entrypoint[0], args...)
	cmd.Dir = cmp.Or(cf.Config.WorkingDir, "/")
	cmd.Env = append(slices.Clone(cf.Config.Env),
		"KUBERNETES_SERVICE_HOST="+apiserver.Hostname(), "KUBERNETES_SERVICE_PORT="+apiserver.Port())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
	}
	logPath := logPathOf(t, "image-controller")
	proc, err := cluster.StartCommand("sluice (image)", cmd, logPath)
	if err != nil {
		t.Fatal(err)
	}
	stopAtCleanup(t, proc)
	health := "http://127.0.0.1:" + strconv.Itoa(ports[3])
	metricsURL := "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/metrics"
	eventually(t, 2*time.Minute, "controller from the image ready", func(ctx context.Context) error {
		if exited, err := proc.Exited(); exited {
			t.Fatalf("controller exited: %v", err)
		}
		return httpOK(ctx, health+"/readyz")
	})
	t.Logf("controller from the image ready (chroot %s, uid %d)", root, uid)

	// Admission: the API server calls the chrooted controller's webhooks.
	admitCheckout(ctx, t, cs, teamNS, metricsURL, "the controller from the image")

	// xDS: an ADS stream gets the Listener of the admitted service.
	eventually(t, time.Minute, "pod of the admitted Deployment running", func(ctx context.Context) error {
		_, err := runningPods(ctx, teamNS, map[string]string{v1alpha1.LabelService: "checkout"}, 1)
		return err
	})
	// The xDS port is TLS with ServiceAccount tokens: verify with the CA of the Secret the controller issued.
	sec, err := cs.CoreV1().Secrets(releaseNS).Get(ctx, fullname+"-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkXDSTokenUnderChart(ctx, t, teamNS, "127.0.0.1:"+strconv.Itoa(ports[1]), sec.Data[certs.SecretKeyCACert], cmp.Or(argValue(args, "--xds-token-audience"), auth.DefaultAudience))

	// A freeze window in Europe/Paris that covers now in Paris but would not
	// if its times were read as UTC (Paris is ahead of UTC all year). The
	// policy's own admission (the chrooted controller's webhook compiles it)
	// needs the zone; so does the denial.
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(paris)
	from, to := now.Add(-20*time.Minute), now.Add(20*time.Minute)
	policy := teamNS + "-freeze"
	applyPolicy(t, policy, &metav1.LabelSelector{MatchLabels: map[string]string{"image-e2e": releaseNS}}, v1alpha1.ModeEnforce,
		func(s *v1alpha1.DeploymentPolicySpec) {
			s.Rules.FreezeWindows = []v1alpha1.FreezeWindow{{Name: "paris-launch", TimeZone: "Europe/Paris", Reason: "launch freeze",
				Dates: &v1alpha1.DateRange{From: from.Format("2006-01-02T15:04"), To: to.Format("2006-01-02T15:04")}}}
		})
	// A real create, not a dry run: the webhooks count violations only for
	// requests with effects.
	frozen := deployment(teamNS, "web", "example.com/web:1.0", 1)
	eventually(t, time.Minute, "freeze window in Europe/Paris enforced by the controller from the image", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		_, err := cs.AppsV1().Deployments(teamNS).Create(ctx, frozen, metav1.CreateOptions{})
		if err == nil {
			t.Fatalf("Deployment %s/%s admitted inside the freeze window", teamNS, frozen.Name)
		}
		if !strings.Contains(err.Error(), "paris-launch") {
			return fmt.Errorf("create inside the freeze window: %v, want a denial naming it", err)
		}
		n, err := metricWith(ctx, metricsURL, webhook.MetricViolations, `policy="`+policy+`"`)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("the controller from the image counted no violation of %s", policy)
		}
		return nil
	})
	if exited, err := proc.Exited(); exited {
		t.Fatalf("controller exited: %v", err)
	}
	bad, err := chartLogProblems(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("the controller from the image hit %d permission errors:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// buildImage runs `make image`'s tool for one platform into dir and reads
// the index back.
func buildImage(ctx context.Context, t *testing.T, dir string, p v1.Platform) v1.ImageIndex {
	t.Helper()
	const version, commit = "v0.0.0-e2e", "e2e0000000000000000000000000000000000000"
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "run", "./hack/image", "build", "-out", dir, "-platforms", p.String(),
		"-version", version, "-commit", commit,
		"-ldflags", "-X main.version="+version+" -X main.commit="+commit, "-source-date-epoch", "1764720000")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build the image: %v\n%s", err, out)
	}
	t.Logf("image built in %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	idx, err := image.ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func indexDigest(t *testing.T, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// imageUser parses the config's numeric "uid:gid".
func imageUser(t *testing.T, user string) (int, int) {
	t.Helper()
	u, g, ok := strings.Cut(user, ":")
	uid, uerr := strconv.Atoi(u)
	gid, gerr := strconv.Atoi(g)
	if !ok || uerr != nil || gerr != nil || uid == 0 || gid == 0 {
		t.Fatalf("image user %q: want a numeric non-root uid:gid", user)
	}
	return uid, gid
}

// checkChartMatchesImage compares the chart's controller with the image's
// config: user, first argument, container ports.
func checkChartMatchesImage(t *testing.T, deploy map[string]any, cf *v1.ConfigFile) {
	t.Helper()
	var d struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(deploy, &d); err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	sc := pod.SecurityContext
	user := fmt.Sprintf("%d:%d", ptr.Deref(sc.RunAsUser, -1), ptr.Deref(sc.RunAsGroup, -1))
	if user != cf.Config.User {
		t.Errorf("the chart runs as %s, the image as %s", user, cf.Config.User)
	}
	c := pod.Containers[0]
	if len(c.Command) > 0 {
		t.Errorf("the chart overrides the image's entrypoint with %v", c.Command)
	}
	if len(c.Args) == 0 || len(cf.Config.Cmd) == 0 || c.Args[0] != cf.Config.Cmd[0] {
		t.Errorf("the chart's args %v do not start with the image's command %v", c.Args, cf.Config.Cmd)
	}
	var chartPorts, imagePorts []string
	for _, p := range c.Ports {
		chartPorts = append(chartPorts, fmt.Sprintf("%d/%s", p.ContainerPort, strings.ToLower(string(p.Protocol))))
	}
	for p := range cf.Config.ExposedPorts {
		imagePorts = append(imagePorts, p)
	}
	slices.Sort(chartPorts)
	slices.Sort(imagePorts)
	if !slices.Equal(chartPorts, imagePorts) {
		t.Errorf("the chart's container ports %v, the image exposes %v", chartPorts, imagePorts)
	}
}

// mountServiceAccount writes what the kubelet mounts read-only at
// serviceAccountDir: a token of the ServiceAccount, the cluster CA and the
// namespace.
func mountServiceAccount(ctx context.Context, t *testing.T, root, namespace, name string) {
	t.Helper()
	tr, err := env.Client().CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request a token for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	cfg := env.RESTConfig()
	ca := cfg.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			t.Fatalf("the cluster's CA: %v", err)
		}
	}
	dir := filepath.Join(root, serviceAccountDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(namespace)} {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRootFS checks that the root filesystem holds the image's files and
// the ServiceAccount mount only, and that uid can write nowhere but /tmp
// (the chart's readOnlyRootFilesystem with its /tmp emptyDir).
func checkRootFS(t *testing.T, root string, uid int) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		paths = append(paths, "/"+filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		writable := int(st.Uid) == uid || fi.Mode().Perm()&0o022 != 0
		if writable && rel != "tmp" {
			t.Errorf("/%s is writable by uid %d (owner %d, mode %s)", rel, uid, st.Uid, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/.", "/etc", "/etc/group", "/etc/passwd", "/etc/ssl", "/etc/ssl/certs", "/etc/ssl/certs/ca-certificates.crt",
		"/sluice", "/tmp", "/var", "/var/run", "/var/run/secrets", "/var/run/secrets/kubernetes.io",
		"/var/run/secrets/kubernetes.io/serviceaccount", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
		"/var/run/secrets/kubernetes.io/serviceaccount/namespace", "/var/run/secrets/kubernetes.io/serviceaccount/token"}
	if !slices.Equal(want, paths) {
		t.Errorf("the root filesystem holds %v, want %v", paths, want)
	}
}
