package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// file is one entry of a layer: a directory when data is nil and mode has
// fs.ModeDir, else a regular file.
type file struct {
	path     string // absolute, clean
	mode     fs.FileMode
	uid, gid int
	data     []byte
}

func dir(p string, mode fs.FileMode) file { return file{path: p, mode: fs.ModeDir | mode} }

func regular(p string, mode fs.FileMode, data []byte) file {
	return file{path: p, mode: mode, data: data}
}

// layerTar writes files as a tar archive that depends only on its input: the
// parent directories of every file are added (root-owned, 0755) unless
// given, entries are sorted by path so a directory precedes its contents,
// every time stamp is mtime, and no user or group names are recorded.
func layerTar(files []file, mtime time.Time) ([]byte, error) {
	byPath := map[string]file{}
	for _, f := range files {
		if f.path != path.Clean(f.path) || !path.IsAbs(f.path) || f.path == "/" {
			return nil, fmt.Errorf("layer entry %q: want a clean absolute path below /", f.path)
		}
		if _, dup := byPath[f.path]; dup {
			return nil, fmt.Errorf("layer entry %q given twice", f.path)
		}
		byPath[f.path] = f
	}
	for _, f := range files {
		for p := path.Dir(f.path); p != "/"; p = path.Dir(p) {
			if g, ok := byPath[p]; ok {
				if !g.mode.IsDir() {
					return nil, fmt.Errorf("layer entry %q is a file and the parent of %q", p, f.path)
				}
				continue
			}
			byPath[p] = dir(p, 0o755)
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	slices.Sort(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := byPath[p]
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    int64(f.mode.Perm()),
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if f.mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		if f.mode.IsDir() {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", p, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// newLayer is an OCI layer (gzip, default level) holding files, with the
// history entry that says what it is.
func newLayer(files []file, mtime time.Time, createdBy string) (mutate.Addendum, error) {
	raw, err := layerTar(files, mtime)
	if err != nil {
		return mutate.Addendum{}, fmt.Errorf("%s layer: %w", createdBy, err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.DefaultCompression),
		// Compress once: the digest, the size and the written blob all read
		// the compressed bytes.
		tarball.WithCompressedCaching)
	if err != nil {
		return mutate.Addendum{}, fmt.Errorf("%s layer: %w", createdBy, err)
	}
	return mutate.Addendum{
		Layer:     l,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: mtime}, CreatedBy: createdBy, Comment: "built by make image"},
	}, nil
}
