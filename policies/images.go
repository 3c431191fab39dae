package policies

import (
	"fmt"
	"strings"
)

// imageRef is the part of a container image reference the rules need.
type imageRef struct {
	// name is the repository with its registry made explicit, e.g.
	// "docker.io/library/nginx" for "nginx".
	name   string
	tag    string
	digest string
}

// parseImage splits an image reference such as "ghcr.io/acme/app:1.2@sha256:…"
// and makes the Docker Hub default registry explicit, so registry rules can't
// be dodged by leaving it out.
func parseImage(image string) (imageRef, error) {
	if image == "" {
		return imageRef{}, fmt.Errorf("empty image")
	}
	if strings.ContainsAny(image, " \t\n") {
		return imageRef{}, fmt.Errorf("image %q contains white space", image)
	}
	var ref imageRef
	rest := image
	if i := strings.Index(rest, "@"); i >= 0 {
		rest, ref.digest = rest[:i], rest[i+1:]
		if ref.digest == "" {
			return imageRef{}, fmt.Errorf("image %q has an empty digest", image)
		}
	}
	// A tag follows the last ':' after the last '/'; an earlier ':' is a port.
	slash := strings.LastIndex(rest, "/")
	if i := strings.LastIndex(rest, ":"); i > slash {
		rest, ref.tag = rest[:i], rest[i+1:]
		if ref.tag == "" {
			return imageRef{}, fmt.Errorf("image %q has an empty tag", image)
		}
	}
	if rest == "" || strings.HasSuffix(rest, "/") || strings.HasPrefix(rest, "/") {
		return imageRef{}, fmt.Errorf("image %q has no repository name", image)
	}
	ref.name = normalizeRepository(rest)
	return ref, nil
}

// normalizeRepository adds Docker Hub's implicit registry and library/ prefix.
func normalizeRepository(repo string) string {
	first, _, hasSlash := strings.Cut(repo, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return repo
	}
	if !hasSlash {
		return "docker.io/library/" + repo
	}
	return "docker.io/" + repo
}

// normalizeRegistryPrefix prepares an allowed-registry entry for matching:
// without a trailing slash, and with Docker Hub's implicit registry made
// explicit ("acme" is the Docker Hub organisation docker.io/acme).
func normalizeRegistryPrefix(prefix string) string {
	p := strings.TrimSuffix(prefix, "/")
	first, _, _ := strings.Cut(p, "/")
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return p
	}
	return "docker.io/" + p
}

// fromRegistry reports whether repository name lies under prefix at a path
// boundary: "ghcr.io/acme" admits "ghcr.io/acme/app", not "ghcr.io/acmecorp/app".
func fromRegistry(name, prefix string) bool {
	return name == prefix || strings.HasPrefix(name, prefix+"/")
}
