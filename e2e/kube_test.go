package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/e2e/testkit"
)

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-") + "-" + fmt.Sprint(time.Now().UnixNano()%100000)
	testkit.Namespace(t, env.Client(), name, labels)
	return name
}

// eventually is testkit.Eventually: every look shares the timeout.
var eventually = testkit.Eventually

// runningPods is testkit.RunningPods on the shared cluster.
func runningPods(ctx context.Context, ns string, selector map[string]string, want int) ([]corev1.Pod, error) {
	return testkit.RunningPods(ctx, env.Client(), ns, selector, want)
}

func isLoopback(ip string) bool {
	p := net.ParseIP(ip)
	return p != nil && p.IsLoopback()
}
