package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// tinyMain is the main package of the test binaries: small, so that
// compiling it for another architecture takes seconds.
const tinyMain = "example.com/tiny"

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}

	tinyOnce sync.Once
	tinyBins map[string][]byte
	tinyErr  error
)

// tiny returns static binaries of a small Go program for amd64 and arm64,
// built by GoBuild as `make image` builds sluice.
func tiny(t *testing.T) map[string][]byte {
	t.Helper()
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "image-test-")
		if err != nil {
			tinyErr = err
			return
		}
		defer os.RemoveAll(dir)
		files := map[string]string{
			"go.mod":  "module " + tinyMain + "\n\ngo 1.26\n",
			"main.go": "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"tiny\\n\") }\n",
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				tinyErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		bins, err := GoBuild{Dir: dir, Package: ".", LDFLAGS: "-X main.version=test"}.Build(ctx, dir, []v1.Platform{amd64, arm64})
		if err != nil {
			tinyErr = err
			return
		}
		tinyBins = map[string][]byte{}
		for _, b := range bins {
			tinyBins[b.Platform.Architecture] = b.Data
		}
	})
	if tinyErr != nil {
		t.Fatalf("build the test binaries: %v", tinyErr)
	}
	return tinyBins
}

func testSpec(t *testing.T) Spec {
	bins := tiny(t)
	return Spec{
		Version: "v0.1.0", Commit: "0123456789abcdef0123456789abcdef01234567",
		Created:     time.Unix(1764720000, 0),
		MainPackage: tinyMain,
		Binaries:    []Binary{{Platform: amd64, Data: bins["amd64"]}, {Platform: arm64, Data: bins["arm64"]}},
	}
}

func digest(t *testing.T, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBuildIsReproducible(t *testing.T) {
	spec := testSpec(t)
	a, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, a) != digest(t, b) {
		t.Errorf("two builds of the same spec: %s and %s", digest(t, a), digest(t, b))
	}
	reversed := spec
	reversed.Binaries = []Binary{spec.Binaries[1], spec.Binaries[0]}
	if c, err := Build(reversed); err != nil || digest(t, c) != digest(t, a) {
		t.Errorf("binaries given in another order: %v, digest differs", err)
	}
	for name, change := range map[string]func(*Spec){
		"version": func(s *Spec) { s.Version = "v0.1.1" },
		"commit":  func(s *Spec) { s.Commit = "fedcba9876543210fedcba9876543210fedcba98" },
		"created": func(s *Spec) { s.Created = s.Created.Add(time.Second) },
	} {
		t.Run(name, func(t *testing.T) {
			s := spec
			change(&s)
			c, err := Build(s)
			if err != nil {
				t.Fatal(err)
			}
			if digest(t, c) == digest(t, a) {
				t.Errorf("changing the %s kept the digest %s", name, digest(t, a))
			}
		})
	}
}

func TestBuildConfigAndLayers(t *testing.T) {
	spec := testSpec(t)
	idx, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := im.Annotations["org.opencontainers.image.revision"]; got != spec.Commit {
		t.Errorf("index revision annotation %q, want %q", got, spec.Commit)
	}
	var platforms []string
	for _, d := range im.Manifests {
		platforms = append(platforms, d.Platform.String())
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, platforms); diff != "" {
		t.Errorf("index platforms (-want +got):\n%s", diff)
	}
	for _, p := range []v1.Platform{amd64, arm64} {
		t.Run(p.Architecture, func(t *testing.T) {
			img, err := PlatformImage(idx, p)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != p.Architecture || cf.OS != "linux" {
				t.Errorf("config platform %s/%s, want %s", cf.OS, cf.Architecture, p.String())
			}
			if cf.Config.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532", cf.Config.User)
			}
			if diff := cmp.Diff([]string{"/sluice"}, cf.Config.Entrypoint); diff != "" {
				t.Errorf("entrypoint (-want +got):\n%s", diff)
			}
			for _, port := range []string{"9443/tcp", "18000/tcp", "8080/tcp", "8081/tcp"} {
				if _, ok := cf.Config.ExposedPorts[port]; !ok {
					t.Errorf("port %s not exposed: %v", port, cf.Config.ExposedPorts)
				}
			}
			want := Annotations(spec.Version, spec.Commit, spec.Created)
			if diff := cmp.Diff(want, cf.Config.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, m.Annotations); diff != "" {
				t.Errorf("manifest annotations (-want +got):\n%s", diff)
			}
			if !cf.Created.Time.Equal(spec.Created) || len(cf.History) != 3 {
				t.Errorf("created %s with %d history entries, want %s and 3", cf.Created, len(cf.History), spec.Created)
			}
			files := imageFiles(t, img)
			if diff := cmp.Diff(map[string]string{
				"etc":                               "dir 0755 0:0",
				"etc/group":                         "file 0644 0:0",
				"etc/passwd":                        "file 0644 0:0",
				"etc/ssl":                           "dir 0755 0:0",
				"etc/ssl/certs":                     "dir 0755 0:0",
				"etc/ssl/certs/ca-certificates.crt": "file 0644 0:0",
				"sluice":                            "file 0755 0:0",
				"tmp":                               "dir 1777 0:0",
			}, files.kinds); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if !bytes.Equal(files.data["sluice"], tiny(t)[p.Architecture]) {
				t.Error("/sluice is not the binary given")
			}
			if !strings.Contains(string(files.data["etc/passwd"]), "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd lacks the non-root user:\n%s", files.data["etc/passwd"])
			}
			if n := countCerts(t, files.data["etc/ssl/certs/ca-certificates.crt"]); n < 100 {
				t.Errorf("the CA bundle holds %d certificates, want the NSS roots (over 100)", n)
			}
			for _, mt := range files.mtimes {
				if !mt.Equal(spec.Created) {
					t.Errorf("a file is stamped %s, want %s", mt, spec.Created)
					break
				}
			}
		})
	}
}

type fileSet struct {
	kinds  map[string]string
	data   map[string][]byte
	mtimes []time.Time
}

// imageFiles lists img's flattened filesystem.
func imageFiles(t *testing.T, img v1.Image) fileSet {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	fs := fileSet{kinds: map[string]string{}, data: map[string][]byte{}}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kind := "file"
		if h.Typeflag == tar.TypeDir {
			kind = "dir"
		}
		fs.kinds[h.Name] = fmt.Sprintf("%s %04o %d:%d", kind, h.Mode, h.Uid, h.Gid)
		fs.mtimes = append(fs.mtimes, h.ModTime)
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fs.data[h.Name] = b
	}
	return fs
}

func countCerts(t *testing.T, b []byte) int {
	t.Helper()
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			t.Errorf("CA bundle: %v", err)
		}
		n++
	}
	return n
}

func TestCheckBinary(t *testing.T) {
	bins := tiny(t)
	tests := map[string]struct {
		bin      []byte
		platform v1.Platform
		main     string
		wantErr  string
	}{
		"amd64":                 {bins["amd64"], amd64, tinyMain, ""},
		"arm64":                 {bins["arm64"], arm64, tinyMain, ""},
		"arm64 binary as amd64": {bins["arm64"], amd64, tinyMain, "ELF machine EM_AARCH64"},
		"amd64 binary as arm64": {bins["amd64"], arm64, tinyMain, "ELF machine EM_X86_64"},
		"other main package":    {bins["arm64"], arm64, MainPackage, "built from " + tinyMain},
		"not ELF":               {[]byte("#!/bin/sh\n"), amd64, tinyMain, "not an ELF file"},
		"unsupported arch":      {bins["amd64"], v1.Platform{OS: "linux", Architecture: "riscv64"}, tinyMain, "unsupported architecture"},
	}
	if runtime.GOARCH == "amd64" {
		if dyn := cgoBinary(t); dyn != nil {
			tests["dynamically linked"] = struct {
				bin      []byte
				platform v1.Platform
				main     string
				wantErr  string
			}{dyn, amd64, tinyMain, "dynamically linked"}
		}
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := CheckBinary(tc.bin, tc.platform, tc.main)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// cgoBinary builds the test program with cgo, linked against the C
// library, or returns nil (and says why) when there is no C compiler.
func cgoBinary(t *testing.T) []byte {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Logf("no C compiler: the dynamically linked case is not run")
		return nil
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":  "module " + tinyMain + "\n\ngo 1.26\n",
		"main.go": "package main\n\n// #include <stdlib.h>\nimport \"C\"\n\nfunc main() { C.free(nil) }\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-o", "dyn", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build with cgo: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "dyn"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildRejectsBadSpecs(t *testing.T) {
	good := testSpec(t)
	tests := map[string]struct {
		change  func(*Spec)
		wantErr string
	}{
		"no version":         {func(s *Spec) { s.Version = "" }, "version is required"},
		"no commit":          {func(s *Spec) { s.Commit = "" }, "commit is required"},
		"no time":            {func(s *Spec) { s.Created = time.Time{} }, "SOURCE_DATE_EPOCH"},
		"no binaries":        {func(s *Spec) { s.Binaries = nil }, "at least one binary"},
		"two for a platform": {func(s *Spec) { s.Binaries = []Binary{s.Binaries[0], s.Binaries[0]} }, "two binaries"},
		"not linux": {func(s *Spec) {
			s.Binaries = []Binary{{Platform: v1.Platform{OS: "darwin", Architecture: "arm64"}, Data: s.Binaries[1].Data}}
		}, "only linux"},
		"binary mismatch": {func(s *Spec) { s.Binaries = []Binary{{Platform: arm64, Data: s.Binaries[0].Data}} }, "ELF machine"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := good
			tc.change(&s)
			_, err := Build(s)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLayerTar(t *testing.T) {
	mtime := time.Unix(1, 0)
	tests := map[string]struct {
		files   []file
		want    []string
		wantErr string
	}{
		"parents added and sorted": {
			files: []file{regular("/b/c/d", 0o644, []byte("x")), regular("/a", 0o600, nil)},
			want:  []string{"a", "b/", "b/c/", "b/c/d"},
		},
		"given directory kept": {
			files: []file{dir("/tmp", 0o700), regular("/tmp/x", 0o644, nil)},
			want:  []string{"tmp/", "tmp/x"},
		},
		"relative path":    {files: []file{regular("etc/passwd", 0o644, nil)}, wantErr: "clean absolute path"},
		"unclean path":     {files: []file{regular("/etc/../passwd", 0o644, nil)}, wantErr: "clean absolute path"},
		"twice":            {files: []file{regular("/a", 0o644, nil), regular("/a", 0o644, nil)}, wantErr: "given twice"},
		"file as a parent": {files: []file{regular("/a", 0o644, nil), regular("/a/b", 0o644, nil)}, wantErr: "is a file and the parent"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			raw, err := layerTar(tc.files, mtime)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			tr := tar.NewReader(bytes.NewReader(raw))
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, h.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}
