//go:build linux

package stack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Blob is content with its descriptor.
type Blob struct {
	Desc ocispec.Descriptor
	Data []byte
}

func newBlob(mediaType string, data []byte) Blob {
	return Blob{Desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}
}

// Image is a single-platform OCI image held in memory.
type Image struct {
	Manifest Blob
	Config   Blob
	Layers   []Blob
}

// Blobs lists what a registry needs before the manifest: layers and config.
func (i *Image) Blobs() []Blob { return append(append([]Blob(nil), i.Layers...), i.Config) }

// ID is the image ID a CRI runtime reports: the config digest.
func (i *Image) ID() string { return i.Config.Desc.Digest.String() }

// ImageOptions vary an image's config (not its files).
type ImageOptions struct {
	Entrypoint []string
	Cmd        []string
	StopSignal string
	// Labels make an otherwise identical image a distinct one (another ID).
	Labels map[string]string
}

// layerEntry is a file, directory or symlink in a layer.
type layerEntry struct {
	path     string
	mode     int64
	typ      byte
	data     []byte
	linkname string
}

// layer is a compressed layer and the digest of its uncompressed tar.
type layer struct {
	blob   Blob
	diffID digest.Digest
}

// buildLayer writes entries as a gzipped tar. Fixed timestamps keep its
// digests stable from run to run.
func buildLayer(entries []layerEntry) (layer, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	epoch := time.Unix(0, 0).UTC()
	for _, e := range entries {
		hdr := &tar.Header{Name: e.path, Mode: e.mode, Typeflag: e.typ, Linkname: e.linkname, ModTime: epoch, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return layer{}, fmt.Errorf("tar %s: %w", e.path, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return layer{}, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return layer{}, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return layer{}, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return layer{}, err
	}
	if err := zw.Close(); err != nil {
		return layer{}, err
	}
	return layer{blob: newBlob(ocispec.MediaTypeImageLayerGzip, gz.Bytes()), diffID: digest.FromBytes(raw.Bytes())}, nil
}

// buildImage assembles a one-layer image around l.
func buildImage(l layer, opts ImageOptions) (*Image, error) {
	epoch := time.Unix(0, 0).UTC()
	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Entrypoint: opts.Entrypoint,
			Cmd:        opts.Cmd,
			StopSignal: opts.StopSignal,
			Labels:     opts.Labels,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.diffID}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	config := newBlob(ocispec.MediaTypeImageConfig, cfgJSON)
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.Desc,
		Layers:    []ocispec.Descriptor{l.blob.Desc},
	}
	mJSON, err := json.Marshal(manifest)
	if err != nil {
		return nil, err
	}
	return &Image{Manifest: newBlob(ocispec.MediaTypeImageManifest, mJSON), Config: config, Layers: []Blob{l.blob}}, nil
}

func dir(path string, mode int64) layerEntry {
	return layerEntry{path: path + "/", mode: mode, typ: tar.TypeDir}
}

func file(path string, mode int64, data []byte) layerEntry {
	return layerEntry{path: path, mode: mode, typ: tar.TypeReg, data: data}
}

// BusyboxBinary is the statically linked busybox of Debian's busybox-static.
const BusyboxBinary = "/bin/busybox"

var busybox struct {
	once  sync.Once
	layer layer
	err   error
}

// BusyboxImage builds an image around the host's static busybox: the
// binary, a /bin symlink for each of its applets, and just enough of /etc
// for users and names to resolve. Variants share the one layer.
func BusyboxImage(opts ImageOptions) (*Image, error) {
	busybox.once.Do(func() { busybox.layer, busybox.err = busyboxLayer() })
	if busybox.err != nil {
		return nil, busybox.err
	}
	if opts.Cmd == nil && opts.Entrypoint == nil {
		opts.Cmd = []string{"sh"}
	}
	return buildImage(busybox.layer, opts)
}

func busyboxLayer() (layer, error) {
	bin, err := os.ReadFile(BusyboxBinary)
	if err != nil {
		return layer{}, fmt.Errorf("read busybox (install busybox-static): %w", err)
	}
	out, err := exec.Command(BusyboxBinary, "--list").Output()
	if err != nil {
		return layer{}, fmt.Errorf("list busybox applets: %w", err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	have := make(map[string]bool, len(applets))
	for _, a := range applets {
		have[a] = true
	}
	for _, want := range []string{"sh", "sleep", "httpd", "wget", "cat", "echo", "ps"} {
		if !have[want] {
			return layer{}, fmt.Errorf("busybox at %s lacks the %s applet", BusyboxBinary, want)
		}
	}
	entries := []layerEntry{
		dir("bin", 0o755), dir("dev", 0o755), dir("etc", 0o755), dir("proc", 0o555),
		dir("root", 0o700), dir("sys", 0o555), dir("tmp", 0o1777), dir("var", 0o755), dir("www", 0o755),
		file("bin/busybox", 0o755, bin),
		file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
		file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")),
	}
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		entries = append(entries, layerEntry{path: "bin/" + a, mode: 0o777, typ: tar.TypeSymlink, linkname: "busybox"})
	}
	return buildLayer(entries)
}

// PauseImage builds an image whose only file is the pause binary at /pause.
func PauseImage(pauseBinary string) (*Image, error) {
	bin, err := os.ReadFile(pauseBinary)
	if err != nil {
		return nil, fmt.Errorf("read pause binary: %w", err)
	}
	l, err := buildLayer([]layerEntry{file("pause", 0o755, bin)})
	if err != nil {
		return nil, err
	}
	return buildImage(l, ImageOptions{Entrypoint: []string{"/pause"}})
}
