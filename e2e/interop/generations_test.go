package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// starter starts a client of one implementation with a bootstrap, for
// target; the client lives until the test ends.
type starter func(t *testing.T, bs []byte, target string) client

// generation is one client implementation and release under test, with
// what docs/traffic.md's matrix says it can follow.
type generation struct {
	name string
	// client names the library and its version, as the matrix shows it.
	client string
	start  starter
	// ringHash: it follows a sticky split (ring hash). The others get the
	// stable version for sticky users, and the Rollout names the limit.
	ringHash bool
}

// generations are every client of the matrix that runs here, each checked
// to be installed (`make deps`).
func generations(t *testing.T) []generation {
	t.Helper()
	return []generation{
		{name: "python-grpcio", client: pythonClient(t), start: startPython(t)},
		{name: "grpc-js-xds", client: nodeClient(t), start: startNode(t)},
		{name: "grpc-go-old", client: oldGRPCClient(t), start: startOldGRPC(t)},
		{name: "grpc-go", client: currentGRPCClient(), start: startCurrentGo, ringHash: true},
	}
}

func startPython(t *testing.T) starter {
	t.Helper()
	py := "/usr/bin/python3" // Debian's interpreter, which python3-grpcio is built for
	if out, err := exec.Command(py, "-c", "import grpc").CombinedOutput(); err != nil {
		t.Fatalf("python3-grpcio is missing (run make deps): %v: %s", err, out)
	}
	script := filepath.Join("..", "testdata", "interop", "client.py")
	return func(t *testing.T, bs []byte, target string) client {
		return startProc(t, []string{"PYTHONFAULTHANDLER=1"}, bs, target, py, "-u", script)
	}
}

func startNode(t *testing.T) starter {
	t.Helper()
	modules := filepath.Join(cacheDir(t), "npm", "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "@grpc", "grpc-js-xds")); err != nil {
		t.Fatalf("@grpc/grpc-js-xds is missing (run make deps): %v", err)
	}
	script := filepath.Join("..", "testdata", "interop", "client.js")
	return func(t *testing.T, bs []byte, target string) client {
		return startProc(t, []string{"NODE_PATH=" + modules}, bs, target, "node", script)
	}
}

var (
	oldGRPCOnce sync.Once
	oldGRPCBin  string
	oldGRPCErr  error
)

// startOldGRPC builds e2e/oldgrpc (an older grpc-go, a module of its own)
// once per test binary.
func startOldGRPC(t *testing.T) starter {
	t.Helper()
	oldGRPCOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-oldgrpc-")
		if err != nil {
			oldGRPCErr = err
			return
		}
		oldGRPCBin = filepath.Join(dir, "oldgrpc")
		build := exec.Command("go", "build", "-o", oldGRPCBin, ".")
		build.Dir = filepath.Join("..", "oldgrpc")
		if out, err := build.CombinedOutput(); err != nil {
			oldGRPCErr = err
			t.Logf("build e2e/oldgrpc:\n%s", out)
		}
	})
	if oldGRPCErr != nil {
		t.Fatalf("build e2e/oldgrpc: %v", oldGRPCErr)
	}
	return func(t *testing.T, bs []byte, target string) client {
		return startProc(t, nil, bs, target, oldGRPCBin)
	}
}

func startCurrentGo(t *testing.T, bs []byte, target string) client { return startGo(t, bs, target) }
