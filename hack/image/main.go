// Command image builds and pushes the controller image without a container
// engine; `make image` and `make push` run it.
//
//	go run ./hack/image build -out bin/image -platforms linux/amd64,linux/arm64 \
//	  -version v0.1.0 -commit <sha> -ldflags "<make build's LDFLAGS>" -source-date-epoch <unix seconds>
//	go run ./hack/image push -layout bin/image -image registry/repo -tag v0.1.0
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sluice-dev/sluice/internal/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: image build|push [flags]")
	}
	switch args[0] {
	case "build":
		return build(ctx, args[1:])
	case "push":
		return push(ctx, args[1:])
	default:
		return fmt.Errorf("unknown subcommand %q: want build or push", args[0])
	}
}

func build(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	out := fs.String("out", "bin/image", "directory of the OCI image layout to write")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	version := fs.String("version", "", "version label (required)")
	commit := fs.String("commit", "", "commit label (required)")
	ldflags := fs.String("ldflags", "", "go build -ldflags, as `make build` passes them")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "creation time in Unix seconds (the commit's time)")
	pkg := fs.String("package", "./cmd/sluice", "main package to build")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secs, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil || secs <= 0 {
		return fmt.Errorf("-source-date-epoch %q: want Unix seconds > 0 (e.g. git log -1 --format=%%ct)", *epoch)
	}
	ps, err := image.ParsePlatforms(*platforms)
	if err != nil {
		return err
	}
	start := time.Now()
	tmp, err := os.MkdirTemp("", "sluice-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bins, err := image.GoBuild{Package: *pkg, LDFLAGS: *ldflags}.Build(ctx, tmp, ps)
	if err != nil {
		return err
	}
	compiled := time.Since(start)
	idx, err := image.Build(image.Spec{Version: *version, Commit: *commit, Created: time.Unix(secs, 0), Binaries: bins})
	if err != nil {
		return err
	}
	if err := image.WriteLayout(*out, idx); err != nil {
		return err
	}
	return describe(os.Stdout, idx, *out, compiled, time.Since(start))
}

func push(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	dir := fs.String("layout", "bin/image", "OCI image layout written by build")
	repo := fs.String("image", "", "repository to push to, e.g. ghcr.io/sluice-dev/sluice (required)")
	tag := fs.String("tag", "", "tag to push (required): the version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *repo == "" || *tag == "" {
		return fmt.Errorf("push needs -image registry/repo and -tag")
	}
	idx, err := image.ReadLayout(*dir)
	if err != nil {
		return err
	}
	ref, err := image.Push(ctx, idx, *repo, *tag)
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s:%s\n%s\n", *repo, *tag, ref)
	return nil
}

// describe prints the index digest and each platform's image digest, size
// and layers.
func describe(w *os.File, idx v1.ImageIndex, dir string, compiled, total time.Duration) error {
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "image layout %s\nindex %s (binaries compiled in %s, total %s)\n", dir, d, compiled.Round(time.Millisecond), total.Round(time.Millisecond))
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range m.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		var total int64
		var sizes []string
		for _, l := range layers {
			n, err := l.Size()
			if err != nil {
				return err
			}
			total += n
			sizes = append(sizes, fmt.Sprintf("%.1f KiB", float64(n)/1024))
		}
		fmt.Fprintf(w, "  %s %s: %d layers %v, %.1f MiB compressed\n", desc.Platform.String(), desc.Digest, len(layers), sizes, float64(total)/(1<<20))
	}
	return nil
}
