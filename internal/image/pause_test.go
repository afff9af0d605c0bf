package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func checkBlob(t *testing.T, what string, b blob) {
	t.Helper()
	if b.desc.Digest != digest.FromBytes(b.data) || b.desc.Size != int64(len(b.data)) {
		t.Errorf("%s descriptor %+v does not describe its %d bytes", what, b.desc, len(b.data))
	}
}

func TestBuildImage(t *testing.T) {
	bin := []byte("\x7fELF pretend binary")
	built, err := buildImage([]layerFile{{path: "/pause", mode: 0o755, data: bin}}, ocispec.ImageConfig{Entrypoint: []string{"/pause"}})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, "manifest", built.manifest)
	checkBlob(t, "config", built.config)
	if len(built.layers) != 1 {
		t.Fatalf("%d layers, want 1", len(built.layers))
	}
	checkBlob(t, "layer", built.layers[0])

	var m ocispec.Manifest
	if err := json.Unmarshal(built.manifest.data, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest || built.manifest.desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest header: schema %d media type %q", m.SchemaVersion, m.MediaType)
	}
	if m.Config.Digest != built.config.desc.Digest || m.Config.Size != built.config.desc.Size || m.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("manifest config %+v, want %+v", m.Config, built.config.desc)
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest != built.layers[0].desc.Digest || m.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
		t.Errorf("manifest layers %+v", m.Layers)
	}

	var c ocispec.Image
	if err := json.Unmarshal(built.config.data, &c); err != nil {
		t.Fatalf("config: %v", err)
	}
	if c.OS != "linux" || c.Architecture != goruntime.GOARCH {
		t.Errorf("config platform %s/%s", c.OS, c.Architecture)
	}
	if !slices.Equal(c.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("config entrypoint %v", c.Config.Entrypoint)
	}
	// An uncompressed layer's diff ID is its digest.
	if c.RootFS.Type != "layers" || !slices.Equal(c.RootFS.DiffIDs, []digest.Digest{built.layers[0].desc.Digest}) {
		t.Errorf("config rootfs %+v", c.RootFS)
	}

	tr := tar.NewReader(bytes.NewReader(built.layers[0].data))
	hdr, err := tr.Next()
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	if hdr.Name != "pause" || hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o755 || hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(buildTime) {
		t.Errorf("layer entry %+v", hdr)
	}
	if data, _ := io.ReadAll(tr); !bytes.Equal(data, bin) {
		t.Errorf("layer content %q, want %q", data, bin)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("layer has more than /pause: %v", err)
	}

	again, err := buildImage([]layerFile{{path: "/pause", mode: 0o755, data: bin}}, ocispec.ImageConfig{Entrypoint: []string{"/pause"}})
	if err != nil || again.manifest.desc.Digest != built.manifest.desc.Digest {
		t.Errorf("rebuilding gave manifest %v (%v), want %v: builds must be reproducible", again.manifest.desc.Digest, err, built.manifest.desc.Digest)
	}
}

func TestLayerTarDirectories(t *testing.T) {
	data, err := layerTar([]layerFile{
		{path: "usr/bin/b", mode: 0o755, data: []byte("b")},
		{path: "/etc/a", mode: 0o644, data: []byte("a")},
		{path: "usr/lib/c", mode: 0o600},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hdr.Name)
	}
	want := []string{"etc/", "etc/a", "usr/", "usr/bin/", "usr/bin/b", "usr/lib/", "usr/lib/c"}
	if !slices.Equal(got, want) {
		t.Errorf("layer entries %v, want %v", got, want)
	}

	for _, bad := range [][]layerFile{
		{{path: "/"}},
		{{path: "../escape"}},
		{{path: "a"}, {path: "/a"}},
		{{path: "a"}, {path: "a/b"}},
	} {
		if _, err := layerTar(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("layerTar(%v) error = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestEmbeddedPauseRef(t *testing.T) {
	ref, err := EmbeddedPauseRef()
	if errdefs.IsFailedPrecondition(err) {
		if !strings.Contains(err.Error(), "build with make") {
			t.Errorf("missing pause binary error does not say how to fix it: %v", err)
		}
		// make builds the pause program before any test.
		t.Fatalf("built without the pause binary: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	named, err := NormalizeRef(ref)
	if err != nil || named.String() != ref {
		t.Fatalf("embedded pause ref %q is not normalized (%v, %v)", ref, named, err)
	}
	tag := strings.TrimPrefix(ref, PauseRepository+":")
	if len(tag) != 12 || strings.Trim(tag, "0123456789abcdef") != "" {
		t.Errorf("embedded pause tag %q, want 12 hex digits", tag)
	}
}
