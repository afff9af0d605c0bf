package image

import (
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// NormalizeRef applies the docker reference rules a kubelet user expects:
// `busybox` is `docker.io/library/busybox:latest`, and a reference carrying
// both a tag and a digest is pinned by its digest alone.
func NormalizeRef(ref string) (reference.Named, error) {
	if ref == "" {
		return nil, fmt.Errorf("empty image reference: %w", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return named, nil
}

// parseID recognises an image ID: a config digest, with or without its
// "sha256:" algorithm prefix. Only full IDs are accepted; short prefixes
// would need a scan and can be ambiguous.
func parseID(s string) (digest.Digest, bool) {
	if !strings.Contains(s, ":") {
		s = "sha256:" + s
	}
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() != digest.SHA256 {
		return "", false
	}
	return d, true
}

// nameRecord is an image record's name and the digest of the manifest or
// index it points at.
type nameRecord struct {
	name   string
	target digest.Digest
}

// references splits the names of one image into the CRI's repo tags and
// repo digests. A tag record also yields a repo digest, repository@target,
// because that is exactly what the tag resolved to when it was stored.
// Names that are IDs or not docker references (other clients' records) are
// left out.
func references(recs []nameRecord) (tags, digests []string) {
	seenTag := map[string]bool{}
	seenDigest := map[string]bool{}
	addDigest := func(s string) {
		if !seenDigest[s] {
			seenDigest[s] = true
			digests = append(digests, s)
		}
	}
	for _, r := range recs {
		if _, ok := parseID(r.name); ok {
			continue
		}
		named, err := reference.ParseNormalizedNamed(r.name)
		if err != nil {
			continue
		}
		if c, ok := named.(reference.Canonical); ok {
			if withDigest, err := reference.WithDigest(reference.TrimNamed(named), c.Digest()); err == nil {
				addDigest(withDigest.String())
			}
			continue
		}
		if _, ok := named.(reference.Tagged); ok {
			if s := named.String(); !seenTag[s] {
				seenTag[s] = true
				tags = append(tags, s)
			}
		}
		if r.target != "" {
			if withDigest, err := reference.WithDigest(reference.TrimNamed(named), r.target); err == nil {
				addDigest(withDigest.String())
			}
		}
	}
	sort.Strings(tags)
	sort.Strings(digests)
	return tags, digests
}

// repoDigest is the digest reference of the record named name pointing at
// target, or "" when name is not a docker reference.
func repoDigest(name string, target digest.Digest) string {
	if _, isID := parseID(name); isID {
		return ""
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return ""
	}
	withDigest, err := reference.WithDigest(reference.TrimNamed(named), target)
	if err != nil {
		return ""
	}
	return withDigest.String()
}
