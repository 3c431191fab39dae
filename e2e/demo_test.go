package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/local/demo"
)

// syncBuffer is a bytes.Buffer safe for the demo's writer goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemoStoryPlaysToTheEnd runs `sluice dev --demo`'s story against the
// controller under test: v2 promoted, v3 (failing 20%) rolled back, v4 in
// beta then promoted with the `sluice promote` command. Each chapter fails
// at once, saying why, when the rollout ends the other way.
func TestDemoStoryPlaysToTheEnd(t *testing.T) {
	// The demo's clients prove a ServiceAccount of the demo's namespace,
	// which must exist before its token is minted.
	if err := cluster.EnsureNamespace(context.Background(), env.Client(), demo.Namespace, map[string]string{v1alpha1.LabelTeam: "payments"}); err != nil {
		t.Fatal(err)
	}
	// The story needs a namespace without its Deployment: another run
	// (-count) finds the namespace gone.
	t.Cleanup(func() { deleteNamespaceAndWait(t, demo.Namespace, 3*time.Minute) })
	bootstrap := authBootstrap(t, sluice.XDSAddr, sluice.CAFile, demo.Namespace, fmt.Sprintf("demo-e2e-%d", rolloutNodes.Add(1)))
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	err := demo.Play(ctx, demo.Options{
		Client:    rolloutKube(t),
		Bootstrap: bootstrap,
		Out:       &out,
		Promote: func(ctx context.Context, namespace, name string) error {
			cmd := exec.CommandContext(ctx, sluice.bin, "promote", name, "-n", namespace, "--kubeconfig", env.Kubeconfig())
			b, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("sluice promote: %w: %s", err, b)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("the demo's story did not happen: %v\nits output:\n%s", err, tail(out.String(), 60))
	}
	for _, chapter := range []string{"v2 promoted", "v3 rolled back", "beta cohort on v4", "v4 promoted to everyone", "the story is over"} {
		if !strings.Contains(out.String(), chapter) {
			t.Errorf("the demo's output never says %q", chapter)
		}
	}
}

// deleteNamespaceAndWait deletes namespace name and waits, at most timeout,
// until the API server no longer has it.
func deleteNamespaceAndWait(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	nss := env.Client().CoreV1().Namespaces()
	if err := nss.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete namespace %s: %v", name, err)
	}
	eventually(t, timeout, "namespace "+name+" deleted", func(ctx context.Context) error {
		_, err := nss.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		return fmt.Errorf("namespace %s is still being deleted", name)
	})
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
