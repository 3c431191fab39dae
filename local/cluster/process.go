package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process: a cluster component, or a Sluice controller
// started by the end-to-end tests.
//
// It runs in its own process group (so a terminal's Ctrl-C reaches only the
// parent, which then stops it in order) with the Linux parent-death signal
// set to SIGKILL, so it cannot outlive the parent even when the parent is
// killed or a test binary panics.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done is closed
}

// StartProcess starts bin with args, its output going to logPath.
func StartProcess(name, bin string, args []string, logPath string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	return startLogged(name, exec.Command(bin, args...), logFile, logPath)
}

// StartCommand starts cmd as StartProcess starts a binary (own process
// group, parent-death signal, output to logPath), keeping the rest of its
// SysProcAttr (e.g. a chroot and credentials).
func StartCommand(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	return startLogged(name, cmd, logFile, logPath)
}

func startLogged(name string, cmd *exec.Cmd, logFile *os.File, logPath string) (*Process, error) {
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.exitError()
	default:
		return false, nil
	}
}

func (p *Process) exitError() error {
	if p.err == nil {
		return fmt.Errorf("%s exited\n%s", p.name, p.LogTail(30))
	}
	return fmt.Errorf("%s exited: %w\n%s", p.name, p.err, p.LogTail(30))
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace, and
// waits for the process to exit.
func (p *Process) Stop(grace time.Duration) {
	if ok, _ := p.Exited(); ok {
		return
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		fmt.Fprintf(os.Stderr, "sluice: signal %s: %v\n", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			fmt.Fprintf(os.Stderr, "sluice: kill %s: %v\n", p.name, err)
		}
		<-p.done
	}
}

// Kill kills the process group at once (SIGKILL), as a crash would, and
// waits for the process to exit.
func (p *Process) Kill() {
	if ok, _ := p.Exited(); ok {
		return
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		fmt.Fprintf(os.Stderr, "sluice: kill %s: %v\n", p.name, err)
	}
	<-p.done
}

// LogTail returns the last n lines of the process log, for error messages.
func (p *Process) LogTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	t := newTail(n)
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		t.add(l)
	}
	return fmt.Sprintf("--- last lines of %s ---\n%s", p.logPath, t.String())
}

// tail keeps the last lines written to it.
type tail struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// WaitFor polls cond until it returns true, ctx ends, or one of the watched
// processes exits; the error then says which, with cond's last error.
func WaitFor(ctx context.Context, what string, procs []*Process, cond func(context.Context) (bool, error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, p := range procs {
			if ok, err := p.Exited(); ok {
				return fmt.Errorf("wait for %s: %w", what, err)
			}
		}
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("wait for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}
