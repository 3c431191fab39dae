package image

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The image's files besides the binary. There is no shell, no package
// manager and no zone database: freeze windows name IANA zones, and the
// binary embeds Go's copy of the zone database (time/tzdata, imported by
// cmd/sluice), so the zones it knows follow the Go release it was built with
// and cannot differ between image and `make build`.

// passwd and group name the non-root user, for tools that map the uid to a
// name. Its home is /tmp, the one writable path the chart mounts.
var (
	passwd = fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/tmp:/sbin/nologin\n", UID, GID)
	group  = fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
)

// CABundle is the PEM file of trusted root CAs that the image ships: the
// Mozilla NSS roots from golang.org/x/crypto/x509roots/fallback/bundle, at
// the version go.mod pins, so that every machine builds the same file.
// Roots that NSS trusts only with a constraint a PEM file cannot carry
// (certificates issued before a distrust date) are left out. It returns the
// file and how many roots it holds.
func CABundle() ([]byte, int, error) {
	var buf bytes.Buffer
	n := 0
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, 0, fmt.Errorf("encode CA bundle: %w", err)
		}
		n++
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("the CA bundle holds no unconstrained root")
	}
	return buf.Bytes(), n, nil
}

// baseLayers are the layers every platform shares, least often changed
// first: CA certificates, then the user and the writable /tmp.
func baseLayers(created time.Time) ([]mutate.Addendum, error) {
	ca, _, err := CABundle()
	if err != nil {
		return nil, err
	}
	caLayer, err := newLayer([]file{regular(CACertificates, 0o644, ca)}, created,
		"CA certificates: Mozilla NSS roots from golang.org/x/crypto/x509roots/fallback")
	if err != nil {
		return nil, err
	}
	userLayer, err := newLayer([]file{
		regular("/etc/passwd", 0o644, []byte(passwd)),
		regular("/etc/group", 0o644, []byte(group)),
		// Like the chart's emptyDir at /tmp: writable by the user, sticky.
		dir("/tmp", 0o777|fs.ModeSticky),
	}, created, fmt.Sprintf("non-root user %d:%d and /tmp", UID, GID))
	if err != nil {
		return nil, err
	}
	return []mutate.Addendum{caLayer, userLayer}, nil
}

// binaryLayer holds the sluice binary at the entrypoint.
func binaryLayer(bin []byte, created time.Time) (mutate.Addendum, error) {
	return newLayer([]file{regular(Entrypoint, 0o755, bin)}, created, "sluice binary (static, CGO_ENABLED=0)")
}
