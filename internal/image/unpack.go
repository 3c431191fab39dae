package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Unpack writes img's filesystem (its layers applied in order) into the
// empty or missing directory root, as a container runtime would: modes,
// owners and time stamps as the layers say, root itself 0755. Only
// directories and regular files are accepted (the only kinds Build
// writes); anything else, or a path leaving root, is an error. Setting
// owners needs root; run as another user, files keep that user.
func Unpack(img v1.Image, root string) (err error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	rc := mutate.Extract(img)
	defer func() {
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
	}()
	chown := os.Geteuid() == 0
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack image: %w", err)
		}
		rel := filepath.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if rel == "." {
			continue
		}
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("unpack image: entry %q leaves the root", hdr.Name)
		}
		p := filepath.Join(root, rel)
		mode := hdr.FileInfo().Mode()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("unpack image: %w", err)
			}
		case tar.TypeReg:
			if err := writeFile(p, tr); err != nil {
				return fmt.Errorf("unpack image: %w", err)
			}
		default:
			return fmt.Errorf("unpack image: entry %q has type %q; only directories and regular files are expected", hdr.Name, hdr.Typeflag)
		}
		if chown {
			if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
				return fmt.Errorf("unpack image: %w", err)
			}
		}
		// After chown, which clears set-id and sticky bits on some systems.
		if err := os.Chmod(p, mode&(os.ModePerm|os.ModeSticky|os.ModeSetuid|os.ModeSetgid)); err != nil {
			return fmt.Errorf("unpack image: %w", err)
		}
		if err := os.Chtimes(p, hdr.ModTime, hdr.ModTime); err != nil {
			return fmt.Errorf("unpack image: %w", err)
		}
	}
}

func writeFile(p string, r io.Reader) (err error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.Copy(f, r)
	return err
}
