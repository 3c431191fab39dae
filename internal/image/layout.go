package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// WriteLayout writes idx as an OCI image layout in dir (index.json holding
// one descriptor, of idx), replacing a layout
// already there (and only a layout: a non-empty directory without an
// oci-layout file is left alone, with an error).
func WriteLayout(dir string, idx v1.ImageIndex) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("image layout %s: %w", dir, err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("image layout %s: the directory is not empty and holds no OCI layout; not overwriting it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("image layout %s: remove the old layout: %w", dir, err)
		}
	}
	// index.json names the image index (a blob like any other), so the
	// index's digest is the one a registry will report after a push.
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write image layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx); err != nil {
		return fmt.Errorf("write image layout %s: %w", dir, err)
	}
	return nil
}

// ReadLayout returns the image index that WriteLayout wrote to dir.
func ReadLayout(dir string) (v1.ImageIndex, error) {
	outer, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read image layout %s: %w", dir, err)
	}
	m, err := outer.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read image layout %s: %w", dir, err)
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("image layout %s holds %d entries, want the one index `make image` writes", dir, len(m.Manifests))
	}
	idx, err := outer.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("image layout %s: %w", dir, err)
	}
	return idx, nil
}

// PlatformImage returns idx's image for platform.
func PlatformImage(idx v1.ImageIndex, platform v1.Platform) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.Equals(platform) {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("the image index has no image for %s", platform.String())
}

// Push uploads idx to the repository repo (e.g. ghcr.io/sluice-dev/sluice)
// under tag, with the credentials of the local Docker config (or none), and
// returns the reference by digest.
func Push(ctx context.Context, idx v1.ImageIndex, repo, tag string, opts ...remote.Option) (name.Digest, error) {
	ref, err := name.NewTag(repo+":"+tag, name.StrictValidation)
	if err != nil {
		return name.Digest{}, fmt.Errorf("image reference %s:%s: %w", repo, tag, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return ref.Context().Digest(d.String()), nil
}
