package image

import (
	"slices"
	"testing"

	"github.com/containerd/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

const (
	hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hexB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                        "docker.io/library/busybox:latest",
		"busybox:1.36":                   "docker.io/library/busybox:1.36",
		"library/busybox":                "docker.io/library/busybox:latest",
		"docker.io/busybox":              "docker.io/library/busybox:latest",
		"user/app:v1":                    "docker.io/user/app:v1",
		"registry.k8s.io/pause:3.10":     "registry.k8s.io/pause:3.10",
		"localhost:5000/x":               "localhost:5000/x:latest",
		"127.0.0.1:5000/a/b:c":           "127.0.0.1:5000/a/b:c",
		"busybox@sha256:" + hexA:         "docker.io/library/busybox@sha256:" + hexA,
		"busybox:1.36@sha256:" + hexA:    "docker.io/library/busybox@sha256:" + hexA,
		"quay.io/x/y:tag@sha256:" + hexB: "quay.io/x/y@sha256:" + hexB,
	} {
		got, err := NormalizeRef(in)
		if err != nil {
			t.Errorf("NormalizeRef(%q): %v", in, err)
			continue
		}
		if got.String() != want {
			t.Errorf("NormalizeRef(%q) = %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"", "Busybox", "library/Busybox:1", "busybox:", "a b", "busybox@sha256:123", hexA, "::"} {
		if _, err := NormalizeRef(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("NormalizeRef(%q) error = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]string{
		"sha256:" + hexA: "sha256:" + hexA,
		hexA:             "sha256:" + hexA,
	} {
		got, ok := parseID(in)
		if !ok || got.String() != want {
			t.Errorf("parseID(%q) = %s, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "busybox", "sha256:" + hexA[:12], hexA[:12], "sha512:" + hexA, "sha256:" + hexA + "0", "docker.io/library/busybox:latest"} {
		if got, ok := parseID(in); ok {
			t.Errorf("parseID(%q) = %s, want not an ID", in, got)
		}
	}
}

func TestReferences(t *testing.T) {
	manifest := digest.Digest("sha256:" + hexA)
	other := digest.Digest("sha256:" + hexB)
	tags, digests := references([]nameRecord{
		{"docker.io/library/busybox:latest", manifest},
		{"docker.io/library/busybox:1.36", manifest},
		{"docker.io/library/busybox@sha256:" + hexA, manifest},
		{"registry.k8s.io/e2e/busybox:1.29", other},
		{"sha256:" + hexB, manifest},                   // the ID record
		{"not a docker reference!", manifest},          // another client's record
		{"docker.io/library/busybox:latest", manifest}, // duplicates collapse
	})
	wantTags := []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest", "registry.k8s.io/e2e/busybox:1.29"}
	wantDigests := []string{"docker.io/library/busybox@sha256:" + hexA, "registry.k8s.io/e2e/busybox@sha256:" + hexB}
	if !slices.Equal(tags, wantTags) {
		t.Errorf("tags = %v, want %v", tags, wantTags)
	}
	if !slices.Equal(digests, wantDigests) {
		t.Errorf("digests = %v, want %v", digests, wantDigests)
	}

	tags, digests = references([]nameRecord{{"sha256:" + hexA, manifest}})
	if len(tags) != 0 || len(digests) != 0 {
		t.Errorf("an image known only by ID has tags %v digests %v", tags, digests)
	}
}

func TestRepoDigest(t *testing.T) {
	d := digest.Digest("sha256:" + hexA)
	if got := repoDigest("docker.io/library/busybox:latest", d); got != "docker.io/library/busybox@sha256:"+hexA {
		t.Errorf("repoDigest(tag) = %s", got)
	}
	if got := repoDigest("localhost/crishim/pause:0123456789ab", d); got != "localhost/crishim/pause@sha256:"+hexA {
		t.Errorf("repoDigest(pause) = %s", got)
	}
	if got := repoDigest("sha256:"+hexB, d); got != "" {
		t.Errorf("repoDigest(ID name) = %q, want empty", got)
	}
}
