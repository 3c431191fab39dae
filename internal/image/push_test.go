package image

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPushToRegistry writes the image as `make image` does, reads the
// layout back and pushes it as `make push` does to go-containerregistry's
// in-memory registry, then pulls it by tag and by platform.
func TestPushToRegistry(t *testing.T) {
	spec := testSpec(t)
	idx, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(dir, idx); err != nil {
		t.Fatal(err)
	}
	// Writing again replaces the layout rather than adding to it.
	if err := WriteLayout(dir, idx); err != nil {
		t.Fatal(err)
	}
	fromDisk, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, fromDisk) != digest(t, idx) {
		t.Fatalf("layout holds %s, built %s", digest(t, fromDisk), digest(t, idx))
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/sluice-dev/sluice"
	ref, err := Push(context.Background(), fromDisk, repo, spec.Version)
	if err != nil {
		t.Fatal(err)
	}
	if ref.DigestStr() != digest(t, idx).String() {
		t.Errorf("pushed %s, want digest %s", ref, digest(t, idx))
	}
	tag, err := name.NewTag(repo + ":" + spec.Version)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(tag)
	if err != nil {
		t.Fatalf("pull %s: %v", tag, err)
	}
	if digest(t, pulled) != digest(t, idx) {
		t.Errorf("the registry serves %s for %s, pushed %s", digest(t, pulled), tag, digest(t, idx))
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		plat := arm64
		if p == "linux/amd64" {
			plat = amd64
		}
		img, err := remote.Image(tag, remote.WithPlatform(plat))
		if err != nil {
			t.Fatalf("pull %s for %s: %v", tag, p, err)
		}
		want, err := PlatformImage(idx, plat)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := img.Digest()
		wantD, _ := want.Digest()
		if got != wantD {
			t.Errorf("%s: pulled %s, built %s", p, got, wantD)
		}
	}
	tags, err := remote.List(tag.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{spec.Version}, tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}

	if _, err := Push(context.Background(), idx, repo, "not a tag!"); err == nil {
		t.Error("pushing under an invalid tag succeeded")
	}
}

func TestWriteLayoutKeepsOtherDirectories(t *testing.T) {
	idx, err := Build(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayout(dir, idx); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Fatalf("error %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("the directory's file is gone: %v", err)
	}
}

func TestUnpack(t *testing.T) {
	idx, err := Build(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	img, err := PlatformImage(idx, amd64)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := Unpack(img, root); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		".":                                 os.ModeDir | 0o755,
		"tmp":                               os.ModeDir | os.ModeSticky | 0o777,
		"sluice":                            0o755,
		"etc/passwd":                        0o644,
		"etc/ssl/certs/ca-certificates.crt": 0o644,
	}
	for p, mode := range want {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %s, want %s", p, fi.Mode(), mode)
		}
	}
	bin, err := os.ReadFile(filepath.Join(root, "sluice"))
	if err != nil || len(bin) != len(tiny(t)["amd64"]) {
		t.Errorf("unpacked binary: %v (%d bytes)", err, len(bin))
	}
	if err := Unpack(img, root); err == nil {
		t.Error("unpacking over an unpacked image succeeded")
	}
}
