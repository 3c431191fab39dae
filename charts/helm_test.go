package charts

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockExcludesAndGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "helm.lock")
	unlock, err := lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := lock(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: err = %v, want the context's deadline", err)
	}
	unlock()
	again, err := lock(context.Background(), path)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}

func TestTemplateReportsHelmErrors(t *testing.T) {
	_, err := Template(testContext(t), helm(t), filepath.Join("testdata", "no-such-chart"), TemplateOptions{})
	if err == nil || !strings.Contains(err.Error(), "testdata/no-such-chart is not a chart directory") {
		t.Errorf("rendering a missing chart: err = %v, want 'not a chart directory'", err)
	}
	// helm's own failures carry its message.
	_, err = Template(testContext(t), helm(t), chartDir, TemplateOptions{Set: []string{"image.repository="}})
	if err == nil {
		t.Fatal("rendering with an empty image repository succeeded")
	}
	for _, want := range []string{"helm template", "/image/repository"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
