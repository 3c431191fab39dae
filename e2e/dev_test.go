package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/internal/loopback"
)

// klogLine matches a component log line (klog's text format).
var klogLine = regexp.MustCompile(`^[IWEF]\d{4} \d\d:\d\d:\d\d`)

// dashboardLine is what `sluice dev` prints about the dashboard.
var dashboardLine = regexp.MustCompile(`sluice: dashboard (http://127\.0\.0\.1:\d+/); component logs in (\S+)`)

// devProcess is a `sluice dev` process of a test.
type devProcess struct {
	t    *testing.T
	out  string     // the file holding its terminal output
	done chan error // its exit, once it exited (put back when read)
}

// startDev starts `sluice dev args...` with its terminal output in a file
// of dir. When the test ends it is stopped as with Ctrl-C (SIGINT to its
// process group) and killed if it did not stop within a minute.
func startDev(t *testing.T, dir string, args ...string) *devProcess {
	t.Helper()
	d := &devProcess{t: t, out: filepath.Join(dir, "terminal.txt"), done: make(chan error, 1)}
	f, err := os.Create(d.out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd := exec.Command(sluice.bin, append([]string{"dev"}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Errorf("stop sluice dev: %v", err)
		}
		select {
		case <-d.done:
		case <-time.After(time.Minute):
			t.Errorf("sluice dev did not stop within a minute of Ctrl-C")
			if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Errorf("kill sluice dev: %v", err)
			}
		}
	})
	return d
}

// terminal is what the process printed so far.
func (d *devProcess) terminal() string {
	b, err := os.ReadFile(d.out)
	if err != nil {
		d.t.Fatal(err)
	}
	return string(b)
}

// checkRunning fails the test, with the end of the terminal, if the
// process exited.
func (d *devProcess) checkRunning() {
	select {
	case err := <-d.done:
		d.done <- err
		d.t.Fatalf("sluice dev stopped: %v\n%s", err, tail(d.terminal(), 40))
	default:
	}
}

// TestDevShowsTheDemoOnTheDashboardAndKeepsTheTerminalReadable runs `sluice
// dev --demo` (what `make run` runs) on a cluster of its own: it prints the
// dashboard's URL, the dashboard shows the demo's service, the terminal gets
// no component log line, the demo's live view and chapters are at most 200
// columns wide, and the components' logs are in the file it names.
func TestDevShowsTheDemoOnTheDashboardAndKeepsTheTerminalReadable(t *testing.T) {
	dir := t.TempDir()
	// The xDS port and the two after it (the plaintext listener is the
	// port after the next); metrics and health on two more.
	xdsPort, metrics, webhook := freePorts(t, 3), freePorts(t, 2), freePorts(t, 1)
	dev := startDev(t, dir, "--demo", "--dir", filepath.Join(dir, "dev"),
		"--xds-port", strconv.Itoa(xdsPort), "--webhook-port", strconv.Itoa(webhook), "--metrics-port", strconv.Itoa(metrics), "--dashboard-port", "0")
	terminal := dev.terminal
	var url, logPath string
	rolloutPoll(t, 8*time.Minute, "the demo's story plays to its end", func(ctx context.Context) error {
		dev.checkRunning()
		text := terminal()
		if m := dashboardLine.FindStringSubmatch(text); m != nil && url == "" {
			url, logPath = m[1], m[2]
		}
		if url == "" {
			return errors.New("no dashboard line yet")
		}
		// Follow the demo as a page would, while it plays.
		if _, _, err := httpGet(ctx, url+"api/teams/payments"); err != nil {
			return err
		}
		if !strings.Contains(text, "the story is over") {
			return fmt.Errorf("the story goes on:\n%s", tail(text, 3))
		}
		return nil
	})
	// The dashboard reads a namespace at most every two seconds.
	rolloutPoll(t, 30*time.Second, "the dashboard shows the demo's end", func(ctx context.Context) error {
		code, body, err := httpGet(ctx, url+"api/rollouts/shop/checkout")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("the dashboard's demo rollout: %d %v", code, err)
		}
		return containsAll(`"phase":"Succeeded"`, `"version":"v4"`, `"outcome":"rolled back"`, `"outcome":"promoted"`)(body)
	})
	view := 0
	for i, line := range strings.Split(terminal(), "\n") {
		if klogLine.MatchString(line) {
			t.Errorf("terminal line %d is a component log line: %s", i+1, line)
		}
		// The live view's rows and the story's chapters; other lines name
		// paths, as long as the user's directories.
		if !strings.HasPrefix(line, "[") && !strings.HasPrefix(line, "==>") {
			continue
		}
		view++
		if n := utf8.RuneCountInString(line); n > 200 {
			t.Errorf("terminal line %d is %d columns wide: %s", i+1, n, line)
		}
	}
	if view == 0 {
		t.Errorf("the terminal shows no live view:\n%s", tail(terminal(), 20))
	}
	logs, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("component log file: %v", err)
	}
	if !regexp.MustCompile(`(?m)` + klogLine.String()).Match(logs) {
		t.Errorf("the component log file %s holds no log line", logPath)
	}
}

func freePorts(t *testing.T, n int) int {
	t.Helper()
	p, err := loopback.FreeRun(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
