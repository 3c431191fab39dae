package charts

import (
	"path/filepath"
	"strings"
	"testing"
)

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
