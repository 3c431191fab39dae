package interop

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
)

// The client matrix: each client and version, and how each test that drove
// it ended. `go test` shows a passing package's output only with -v, so the
// matrix is also written to the file $SLUICE_INTEROP_MATRIX names, which
// `make test` prints.

type matrixRow struct {
	test, client, result string
}

var matrix struct {
	mu   sync.Mutex
	rows []matrixRow
}

// recordClient adds t's outcome for client (name and version) to the
// matrix once t ends.
func recordClient(t *testing.T, client string) {
	t.Cleanup(func() {
		result := "pass"
		switch {
		case t.Failed():
			result = "FAIL"
		case t.Skipped():
			result = "skipped"
		}
		matrix.mu.Lock()
		defer matrix.mu.Unlock()
		matrix.rows = append(matrix.rows, matrixRow{test: t.Name(), client: client, result: result})
	})
}

// reportMatrix prints the matrix and writes it where
// $SLUICE_INTEROP_MATRIX says.
func reportMatrix() {
	matrix.mu.Lock()
	rows := slices.Clone(matrix.rows)
	matrix.mu.Unlock()
	if len(rows) == 0 {
		return
	}
	slices.SortFunc(rows, func(a, b matrixRow) int {
		return strings.Compare(a.client+"\x00"+a.test, b.client+"\x00"+b.test)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "interop client matrix (%d runs):\n", len(rows))
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-36s %-7s %s\n", r.client, r.result, r.test)
	}
	fmt.Print(b.String())
	if path := os.Getenv("SLUICE_INTEROP_MATRIX"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "interop: write the client matrix: %v\n", err)
		}
	}
}

// The versions of the clients, read from what runs: the interpreter's
// module, the installed package, the built binary.

func pythonClient(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import grpc; print(grpc.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("python3-grpcio is missing (run make deps): %v: %s", err, out)
	}
	return "python3-grpcio " + strings.TrimSpace(string(out))
}

func nodeClient(t *testing.T) string {
	t.Helper()
	version := func(pkg string) string {
		b, err := os.ReadFile(filepath.Join(cacheDir(t), "npm", "node_modules", "@grpc", pkg, "package.json"))
		if err != nil {
			t.Fatalf("@grpc/%s is missing (run make deps): %v", pkg, err)
		}
		var p struct{ Version string }
		if err := json.Unmarshal(b, &p); err != nil || p.Version == "" {
			t.Fatalf("@grpc/%s/package.json: no version (%v)", pkg, err)
		}
		return p.Version
	}
	return fmt.Sprintf("grpc-js-xds %s (grpc-js %s)", version("grpc-js-xds"), version("grpc-js"))
}

var grpcDep = regexp.MustCompile(`(?m)^\s*dep\s+google\.golang\.org/grpc\s+(\S+)`)

func oldGRPCClient(t *testing.T) string {
	t.Helper()
	startOldGRPC(t) // builds the binary
	out, err := exec.Command("go", "version", "-m", oldGRPCBin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m %s: %v: %s", oldGRPCBin, err, out)
	}
	m := grpcDep.FindSubmatch(out)
	if m == nil {
		t.Fatalf("the e2e/oldgrpc binary names no grpc-go module:\n%s", out)
	}
	return "grpc-go " + string(m[1])
}

func currentGRPCClient() string { return "grpc-go v" + grpc.Version }
