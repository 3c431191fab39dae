// Package image builds the controller's container image without a container
// engine: an empty base plus the project's own layers (CA certificates, the
// non-root user, the static sluice binary), one image per platform gathered
// in an OCI image index. Build is pure: the same binaries, version, commit
// and creation time give the same digests, byte for byte.
package image

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image promises to the chart (charts/sluice/templates/deployment.yaml):
// the binary at the entrypoint, the user it runs as, the ports it serves.
const (
	// Entrypoint is the sluice binary inside the image.
	Entrypoint = "/sluice"
	// UID and GID are the non-root user and group the image runs as
	// (the chart's runAsUser/runAsGroup).
	UID, GID = 65532, 65532
	// CACertificates is where the image keeps the trusted root CAs, the first
	// file Go's crypto/x509 reads on Linux.
	CACertificates = "/etc/ssl/certs/ca-certificates.crt"
	// Source is the project's home, for the org.opencontainers.image.source
	// annotation.
	Source = "https://github.com/sluice-dev/sluice"
)

// DefaultCommand is the image's default arguments (the chart passes its own,
// starting with the same subcommand).
var DefaultCommand = []string{"controller"}

// Ports are the ports `sluice controller` listens on by default: webhook,
// xDS, peers, metrics, health.
var Ports = []int{9443, 18000, 18001, 8080, 8081}

// Binary is the sluice executable for one platform.
type Binary struct {
	Platform v1.Platform
	Data     []byte
}

// Spec is everything an image build depends on.
type Spec struct {
	// Version and Commit label the image; both required.
	Version, Commit string
	// Created is the time stamped on the image and on every file in it
	// (SOURCE_DATE_EPOCH: the commit's time), so that rebuilds are identical.
	Created time.Time
	// Binaries holds one static linux binary per platform.
	Binaries []Binary
	// MainPackage is the Go package the binaries are built from; default
	// MainPackage.
	MainPackage string
}

func (s Spec) validate() error {
	var errs []error
	if s.Version == "" {
		errs = append(errs, errors.New("version is required"))
	}
	if s.Commit == "" {
		errs = append(errs, errors.New("commit is required"))
	}
	if s.Created.IsZero() {
		errs = append(errs, errors.New("creation time is required (SOURCE_DATE_EPOCH)"))
	}
	if len(s.Binaries) == 0 {
		errs = append(errs, errors.New("at least one binary is required"))
	}
	seen := map[string]bool{}
	for _, b := range s.Binaries {
		p := b.Platform.String()
		if b.Platform.OS != "linux" {
			errs = append(errs, fmt.Errorf("platform %s: only linux images are built", p))
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("platform %s: two binaries", p))
		}
		seen[p] = true
	}
	return errors.Join(errs...)
}

// Annotations are the standard OCI annotations (and labels) of an image of
// this version and commit, created at created.
func Annotations(version, commit string, created time.Time) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "sluice",
		"org.opencontainers.image.description": "Sluice controller: admission webhooks and xDS control plane for progressive delivery",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    commit,
		"org.opencontainers.image.created":     created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.url":         Source,
	}
}

// Build assembles the multi-platform image index of spec. Every binary is
// checked first (ELF machine, static linking, Go build info of its
// platform); a binary that would not run in the image is an error.
func Build(spec Spec) (v1.ImageIndex, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("image spec: %w", err)
	}
	created := spec.Created.UTC()
	base, err := baseLayers(created)
	if err != nil {
		return nil, err
	}
	annotations := Annotations(spec.Version, spec.Commit, created)
	// Platforms in a fixed order, whatever the order they were given in: the
	// index's digest depends on it.
	bins := slices.SortedFunc(slices.Values(spec.Binaries), func(a, b Binary) int {
		return cmp.Compare(a.Platform.String(), b.Platform.String())
	})
	var adds []mutate.IndexAddendum
	for _, b := range bins {
		if err := CheckBinary(b.Data, b.Platform, cmp.Or(spec.MainPackage, MainPackage)); err != nil {
			return nil, err
		}
		img, err := platformImage(b, base, created, annotations)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", b.Platform.String(), err)
		}
		p := b.Platform
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return mutate.Annotations(idx, annotations).(v1.ImageIndex), nil
}

// platformImage is one platform's image: the shared base layers, then the
// binary.
func platformImage(b Binary, base []mutate.Addendum, created time.Time, annotations map[string]string) (v1.Image, error) {
	bin, err := binaryLayer(b.Data, created)
	if err != nil {
		return nil, err
	}
	ports := map[string]struct{}{}
	for _, p := range Ports {
		ports[strconv.Itoa(p)+"/tcp"] = struct{}{}
	}
	cfg := &v1.ConfigFile{
		Created:      v1.Time{Time: created},
		Author:       "github.com/sluice-dev/sluice",
		OS:           b.Platform.OS,
		Architecture: b.Platform.Architecture,
		Variant:      b.Platform.Variant,
		Config: v1.Config{
			User:         strconv.Itoa(UID) + ":" + strconv.Itoa(GID),
			Entrypoint:   []string{Entrypoint},
			Cmd:          DefaultCommand,
			ExposedPorts: ports,
			WorkingDir:   "/",
			Labels:       maps.Clone(annotations),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, append(slices.Clone(base), bin)...)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, annotations).(v1.Image), nil
}
