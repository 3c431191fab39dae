package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/local/cluster"
)

// Set at link time by the Makefile (make build, make image).
var (
	version = "dev"
	commit  = "unknown"
)

func osArgs0() string { return os.Args[0] }

// The modules whose versions say which Kubernetes and xDS APIs this binary
// speaks.
const (
	modKubeAPI      = "k8s.io/api"
	modClientGo     = "k8s.io/client-go"
	modEnvoyAPI     = "github.com/envoyproxy/go-control-plane/envoy"
	modControlPlane = "github.com/envoyproxy/go-control-plane"
	modGRPC         = "google.golang.org/grpc"
)

// versionInfo is what `sluice version` reports.
type versionInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
	// KubernetesAPI is the k8s.io/api module built against; ClientGo the
	// client library.
	KubernetesAPI string `json:"kubernetesAPI"`
	ClientGo      string `json:"clientGo"`
	// XDSAPI is the Envoy API module (go-control-plane/envoy) built
	// against; ControlPlane and GRPC the server libraries.
	XDSAPI       string `json:"xdsAPI"`
	ControlPlane string `json:"controlPlane"`
	GRPC         string `json:"grpc"`
	// LocalKubernetes is the Kubernetes release `sluice dev` builds and runs.
	LocalKubernetes string `json:"localKubernetes"`
}

// newVersionInfo reads the module versions from the binary's build info
// (nil when the binary has none: then they are "unknown"). A binary built
// without the Makefile's -X flags but from a module version (go install
// ...@v0.2.0) or a VCS checkout reports those instead of "dev"/"unknown".
func newVersionInfo(bi *debug.BuildInfo, version, commit string) versionInfo {
	mods := map[string]string{}
	if bi != nil {
		for _, m := range bi.Deps {
			v := m.Version
			if m.Replace != nil {
				v = m.Replace.Version // what was built, under the required path
			}
			mods[m.Path] = v
		}
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && commit == "unknown" {
				commit = s.Value
			}
		}
	}
	mod := func(path string) string {
		if v, ok := mods[path]; ok {
			return v
		}
		return "unknown"
	}
	return versionInfo{
		Version: version, Commit: commit,
		Go:              runtime.Version(),
		Platform:        runtime.GOOS + "/" + runtime.GOARCH,
		KubernetesAPI:   mod(modKubeAPI),
		ClientGo:        mod(modClientGo),
		XDSAPI:          mod(modEnvoyAPI),
		ControlPlane:    mod(modControlPlane),
		GRPC:            mod(modGRPC),
		LocalKubernetes: cluster.KubernetesVersion,
	}
}

func (v versionInfo) write(w io.Writer) error {
	_, err := fmt.Fprintf(w, `sluice %s
commit: %s
go: %s (%s)
kubernetes: API %s %s, %s %s
xds: API %s %s, %s %s, %s %s
local cluster (sluice dev): kubernetes %s
`, v.Version, v.Commit, v.Go, v.Platform,
		modKubeAPI, v.KubernetesAPI, modClientGo, v.ClientGo,
		modEnvoyAPI, v.XDSAPI, modControlPlane, v.ControlPlane, modGRPC, v.GRPC,
		v.LocalKubernetes)
	return err
}

func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and the Kubernetes and xDS API versions built against",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, _ := debug.ReadBuildInfo() // nil when absent: versions read "unknown"
			v := newVersionInfo(bi, version, commit)
			switch output {
			case "":
				return v.write(cmd.OutOrStdout())
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			default:
				return fmt.Errorf("--output %q: want json or nothing", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: text)")
	return cmd
}
