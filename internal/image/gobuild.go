package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// GoBuild says how to compile the binaries of an image.
type GoBuild struct {
	// Go is the go command; default "go".
	Go string
	// Dir is the module directory the package is built in.
	Dir string
	// Package is the main package, e.g. "./cmd/sluice".
	Package string
	// LDFLAGS are `make build`'s linker flags (version and commit).
	LDFLAGS string
	// Env is added to the build's environment (after the platform's).
	Env []string
}

// Flags are the go build flags of image binaries besides -ldflags:
// -trimpath keeps the build machine's paths out of the binary, so the
// image's digest does not depend on where the source was checked out.
var Flags = []string{"-trimpath"}

// Build compiles the package for each platform with cgo off (a static
// binary for an empty base) into dir, sharing the go command's build cache,
// and returns the binaries in the order of platforms.
func (g GoBuild) Build(ctx context.Context, dir string, platforms []v1.Platform) ([]Binary, error) {
	goCmd := g.Go
	if goCmd == "" {
		goCmd = "go"
	}
	var out []Binary
	for _, p := range platforms {
		if p.OS != "linux" || p.Variant != "" {
			return nil, fmt.Errorf("platform %s: only linux/<arch> is built", p.String())
		}
		bin := filepath.Join(dir, "sluice-"+p.OS+"-"+p.Architecture)
		args := append([]string{"build"}, Flags...)
		args = append(args, "-ldflags", g.LDFLAGS, "-o", bin, g.Package)
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir = g.Dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
		cmd.Env = append(cmd.Env, g.Env...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %s (%s): %w\n%s", strings.Join(args, " "), p.String(), err, msg)
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		out = append(out, Binary{Platform: p, Data: data})
	}
	return out, nil
}

// ParsePlatforms parses a comma-separated list such as
// "linux/amd64,linux/arm64".
func ParsePlatforms(s string) ([]v1.Platform, error) {
	var ps []v1.Platform
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := v1.ParsePlatform(f)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", f, err)
		}
		if p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("platform %q: want os/arch, e.g. linux/arm64", f)
		}
		ps = append(ps, *p)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("no platform in %q", s)
	}
	return ps, nil
}
