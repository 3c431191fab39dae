package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-dev/sluice/local/cluster"
)

// startDashboard runs `sluice dashboard` with kubeconfig on a free loopback
// port until the test ends and returns its URL (no trailing slash).
func startDashboard(t testing.TB, name, kubeconfig string) string {
	t.Helper()
	url, _ := startDashboardProcess(t, name, kubeconfig)
	return url
}

// startDashboardProcess is startDashboard, also returning the process id.
func startDashboardProcess(t testing.TB, name, kubeconfig string) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logPath := filepath.Join(t.TempDir(), name+".log")
	cmd := exec.Command(sluice.bin, "dashboard", "--kubeconfig", kubeconfig, "--port", strconv.Itoa(port))
	p, err := cluster.StartCommand("dashboard-"+name, cmd, logPath)
	if err != nil {
		t.Fatalf("start dashboard: %v", err)
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("dashboard %s log:\n%s", name, p.LogTail(30))
		}
	})
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.WaitFor(ctx, "dashboard "+name, []*cluster.Process{p}, func(ctx context.Context) (bool, error) {
		code, _, err := httpGet(ctx, url+"/")
		return err == nil && code == http.StatusOK, err
	}); err != nil {
		t.Fatal(err)
	}
	return url, cmd.Process.Pid
}

// httpGet returns the status and body of a GET.
func httpGet(ctx context.Context, url string) (int, string, error) {
	return httpGetAs(ctx, url, "")
}

// httpGetAs is httpGet with a bearer token, if not empty.
func httpGetAs(ctx context.Context, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String(), nil
}

// impersonatingKubeconfig writes a copy of the cluster's kubeconfig whose
// user acts as user (the admin may impersonate), so a process run with it
// has only user's rights.
func impersonatingKubeconfig(t *testing.T, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// browser is headless Chromium driven through the DevTools protocol; it
// keeps the body of every response the pages received.
type browser struct {
	ctx context.Context

	mu        sync.Mutex
	wg        sync.WaitGroup
	urls      map[network.RequestID]string
	responses map[string][]string // URL → bodies received
	missed    int                 // bodies the browser could not return
}

// newBrowser starts headless Chromium at 1280×800 until the test ends.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed (Debian package chromium; hack/install-deps.sh installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 800),
		chromedp.Flag("no-proxy-server", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{ctx: ctx, urls: map[network.RequestID]string{}, responses: map[string][]string{}}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	err = chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventResponseReceived:
			b.mu.Lock()
			b.urls[e.RequestID] = e.Response.URL
			b.mu.Unlock()
		case *network.EventLoadingFinished:
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				res, err := chromedp.Call(ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: e.RequestID})
				b.mu.Lock()
				defer b.mu.Unlock()
				url := b.urls[e.RequestID]
				body := string(res.Body)
				if err != nil {
					body = fmt.Sprintf("<body not captured: %v>", err)
					b.missed++
				}
				b.responses[url] = append(b.responses[url], body)
			}()
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// The window's size includes what a headless window keeps for its
	// frame: set the page's viewport itself to 1280×800.
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride,
		emulation.SetDeviceMetricsOverrideParams{Width: 1280, Height: 800, DeviceScaleFactor: 1}); err != nil {
		t.Fatalf("set the viewport: %v", err)
	}
	return b
}

// open navigates to url.
func (b *browser) open(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// text returns the visible text of the page's main element.
func (b *browser) text(ctx context.Context) (string, error) {
	return chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#main")))
}

// waitText polls the page until its text satisfies cond.
func (b *browser) waitText(t *testing.T, timeout time.Duration, what string, cond func(text string) error) string {
	t.Helper()
	var last string
	rolloutPoll(t, timeout, what, func(context.Context) error {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		s, err := b.text(ctx)
		if err != nil {
			return err
		}
		last = s
		return cond(s)
	})
	return last
}

// screenshot saves the viewport as a PNG in the test's artifact directory.
func (b *browser) screenshot(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
	return path
}

// fetchStatus makes the page itself call url and returns the status.
func (b *browser) fetchStatus(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`fetch(%q).then(r => r.status)`, url), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch %s from the page: %v", url, err)
	}
	return status
}

// captured returns every response body received so far, by URL.
func (b *browser) captured() map[string][]string {
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string][]string{}
	for k, v := range b.responses {
		out[k] = append([]string(nil), v...)
	}
	return out
}
