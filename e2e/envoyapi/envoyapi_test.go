// Package envoyapi checks the translator's goldens against an older Envoy
// API (see go.mod).
package envoyapi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"
)

const testdata = "../../xds/translate/testdata"

// decode reads one protojson resource of a type into the old API, refusing
// unknown fields, and runs its validation rules.
func decode(t *testing.T, typeName string, raw json.RawMessage) {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		t.Fatalf("%s: not in the old API: %v", typeName, err)
	}
	m := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{}).Unmarshal(raw, m); err != nil {
		t.Errorf("%s: the old API cannot read it: %v", typeName, err)
		return
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s: fails the old API's validation: %v", typeName, err)
		}
	}
}

// TestLegacyFormDecodesWithOldAPI: every resource an Envoy older than 1.22
// gets (the shared listeners, clusters and endpoints of <case>.out.yaml, with
// the route configurations of <case>.legacy.out.yaml replacing the
// default ones) decodes with the 1.2x-era API and no unknown field.
func TestLegacyFormDecodesWithOldAPI(t *testing.T) {
	outs, err := filepath.Glob(filepath.Join(testdata, "*.legacy.out.yaml"))
	if err != nil || len(outs) == 0 {
		t.Fatalf("no legacy goldens in %s (%v)", testdata, err)
	}
	for _, legacyPath := range outs {
		name := strings.TrimSuffix(filepath.Base(legacyPath), ".legacy.out.yaml")
		t.Run(name, func(t *testing.T) {
			var current struct {
				Resources []struct {
					Type     string          `json:"type"`
					Name     string          `json:"name"`
					Resource json.RawMessage `json:"resource"`
				} `json:"resources"`
			}
			var legacy struct {
				Routes []struct {
					Name     string          `json:"name"`
					Resource json.RawMessage `json:"resource"`
				} `json:"routes"`
			}
			readYAML(t, filepath.Join(testdata, name+".out.yaml"), &current)
			readYAML(t, legacyPath, &legacy)
			replaced := map[string]bool{}
			for _, r := range legacy.Routes {
				replaced[r.Name] = true
				decode(t, "envoy.config.route.v3.RouteConfiguration", r.Resource)
			}
			for _, r := range current.Resources {
				if r.Type == "envoy.config.route.v3.RouteConfiguration" && replaced[r.Name] {
					continue
				}
				if r.Type == "envoy.config.listener.v3.Listener" && strings.Contains(string(r.Resource), `"apiListener"`) {
					continue // proxyless gRPC listeners: Envoy never asks for them
				}
				decode(t, r.Type, r.Resource)
			}
		})
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := json.Unmarshal(j, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
