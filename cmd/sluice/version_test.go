package main

import (
	"bytes"
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewVersionInfo(t *testing.T) {
	deps := []*debug.Module{
		{Path: modKubeAPI, Version: "v0.37.2"},
		{Path: modClientGo, Version: "v0.37.2"},
		{Path: modEnvoyAPI, Version: "v1.40.0"},
		{Path: modControlPlane, Version: "v0.14.0"},
		{Path: modGRPC, Version: "v1.85.0", Replace: &debug.Module{Path: "example.com/grpc", Version: "v1.85.1"}},
	}
	tests := map[string]struct {
		bi                      *debug.BuildInfo
		version, commit         string
		wantVersion, wantCommit string
		wantKube, wantGRPC      string
	}{
		"linked by the Makefile": {
			bi:      &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Deps: deps},
			version: "v0.1.0", commit: "abc",
			wantVersion: "v0.1.0", wantCommit: "abc", wantKube: "v0.37.2", wantGRPC: "v1.85.1",
		},
		"go install at a version": {
			bi: &debug.BuildInfo{Main: debug.Module{Version: "v0.2.0"}, Deps: deps,
				Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "def"}}},
			version: "dev", commit: "unknown",
			wantVersion: "v0.2.0", wantCommit: "def", wantKube: "v0.37.2", wantGRPC: "v1.85.1",
		},
		"no build info": {
			version: "dev", commit: "unknown",
			wantVersion: "dev", wantCommit: "unknown", wantKube: "unknown", wantGRPC: "unknown",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v := newVersionInfo(tc.bi, tc.version, tc.commit)
			got := []string{v.Version, v.Commit, v.KubernetesAPI, v.GRPC}
			want := []string{tc.wantVersion, tc.wantCommit, tc.wantKube, tc.wantGRPC}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("version, commit, kubernetes API, grpc (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVersionCommand runs the command in this test binary, whose build info
// lists the real modules.
func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	cmd := newVersionCommand()
	cmd.SetOut(&out)
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sluice dev", "go: go1.", "kubernetes: API k8s.io/api v0.", "xds: API github.com/envoyproxy/go-control-plane/envoy v1."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	cmd = newVersionCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"-o", "json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var v versionInfo
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("json output: %v\n%s", err, out.String())
	}
	if v.XDSAPI == "unknown" || v.KubernetesAPI == "unknown" {
		t.Errorf("json output lacks module versions: %+v", v)
	}
	cmd = newVersionCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"-o", "yaml"})
	if err := cmd.Execute(); err == nil {
		t.Error("-o yaml succeeded")
	}
}
