package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// pauseFS holds the pause program built from pausebin/pause.c by make. The
// directory is committed with only a .gitkeep, so a plain `go build` still
// works and EnsureSandboxImage explains what is missing.
//
//go:embed all:pausebin
var pauseFS embed.FS

// PauseRepository is where the embedded pause image is stored; its tag is
// derived from the binary so that a restart finds the image it imported
// before, and a new build gets a new one.
const PauseRepository = "localhost/crishim/pause"

// buildTime stamps every file and config of a built image: a fixed time
// keeps digests reproducible.
var buildTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pauseBinary() ([]byte, error) {
	bin, err := pauseFS.ReadFile("pausebin/pause")
	if err != nil || len(bin) == 0 {
		return nil, fmt.Errorf("crishim was built without its pause binary: build with make (or configure a sandbox image): %w", errdefs.ErrFailedPrecondition)
	}
	return bin, nil
}

// EmbeddedPauseRef is the name of the embedded pause image, or an error
// when this binary was built without one.
func EmbeddedPauseRef() (string, error) {
	bin, err := pauseBinary()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(bin)
	return PauseRepository + ":" + hex.EncodeToString(sum[:])[:12], nil
}

// EnsureSandboxImage makes the pause image available: ref is pulled when
// absent; an empty ref imports the embedded pause image. It returns the
// resolved image, pinned so that the kubelet's image GC leaves it alone.
func (s *Service) EnsureSandboxImage(ctx context.Context, ref string) (*Local, error) {
	s.sandboxMu.Lock()
	defer s.sandboxMu.Unlock()
	if s.sandbox != nil && s.sandboxRef == ref {
		// One cheap lookup guards against an image removed behind our back.
		if _, err := s.getRecord(ctx, s.sandbox.Image.Name()); err == nil {
			return s.sandbox, nil
		}
		s.sandbox = nil
	}
	var (
		local *Local
		err   error
	)
	if ref == "" {
		local, err = s.importPause(ctx)
	} else {
		local, err = s.pullSandbox(ctx, ref)
	}
	if err != nil {
		return nil, err
	}
	s.sandbox, s.sandboxRef = local, ref
	return local, nil
}

func (s *Service) pullSandbox(ctx context.Context, ref string) (*Local, error) {
	local, err := s.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		if _, err = s.Pull(ctx, ref, nil, nil); err != nil {
			return nil, fmt.Errorf("sandbox image: %w", err)
		}
		local, err = s.Get(ctx, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox image %s: %w", ref, err)
	}
	g, err := s.find(ctx, local.ID)
	if err != nil {
		return nil, fmt.Errorf("sandbox image %s: %w", ref, err)
	}
	for _, rec := range g.records {
		if err := s.putRecord(ctx, rec.Name, rec.Target, map[string]string{pinnedLabel: "true"}); err != nil {
			return nil, fmt.Errorf("pin sandbox image %s: %w", ref, err)
		}
	}
	return local, nil
}

// importPause stores the embedded pause program as an image and unpacks
// it, unless a previous run already did.
func (s *Service) importPause(ctx context.Context) (*Local, error) {
	bin, err := pauseBinary()
	if err != nil {
		return nil, err
	}
	name, err := EmbeddedPauseRef()
	if err != nil {
		return nil, err
	}
	if _, err := s.getRecord(ctx, name); err == nil {
		if local, err := s.Get(ctx, name); err == nil {
			return local, nil
		}
		// Present but unusable (content lost): import it again.
	}
	built, err := buildImage([]layerFile{{path: "pause", mode: 0o755, data: bin}}, ocispec.ImageConfig{
		Entrypoint: []string{"/pause"},
	})
	if err != nil {
		return nil, fmt.Errorf("build pause image: %w", err)
	}
	if err := s.store(ctx, name, built, map[string]string{pinnedLabel: "true"}); err != nil {
		return nil, fmt.Errorf("import pause image %s: %w", name, err)
	}
	logrus.WithFields(logrus.Fields{"image": name, "id": built.config.desc.Digest.String()}).Info("imported embedded pause image")
	return s.Get(ctx, name)
}

// store writes a built image's blobs into the content store, names it and
// unpacks it. A lease holds the blobs until the records reference them.
func (s *Service) store(ctx context.Context, name string, b *builtImage, labels map[string]string) error {
	ctx, done, err := s.client.WithLease(ctx)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	// Released even when the request is cancelled, or the lease and the
	// blobs it holds would linger until it expires.
	defer done(context.WithoutCancel(ctx))

	cs := s.client.ContentStore()
	for _, blob := range append(b.layers, b.config) {
		if err := content.WriteBlob(ctx, cs, "crishim-"+blob.desc.Digest.Encoded(), bytes.NewReader(blob.data), blob.desc); err != nil {
			return fmt.Errorf("write blob %s: %w", blob.desc.Digest, err)
		}
	}
	// The manifest's labels tell containerd's GC what it keeps alive.
	gcRefs := map[string]string{"containerd.io/gc.ref.content.config": b.config.desc.Digest.String()}
	for i, l := range b.layers {
		gcRefs["containerd.io/gc.ref.content.l."+strconv.Itoa(i)] = l.desc.Digest.String()
	}
	if err := content.WriteBlob(ctx, cs, "crishim-"+b.manifest.desc.Digest.Encoded(), bytes.NewReader(b.manifest.data), b.manifest.desc, content.WithLabels(gcRefs)); err != nil {
		return fmt.Errorf("write manifest %s: %w", b.manifest.desc.Digest, err)
	}

	if err := s.putRecord(ctx, name, b.manifest.desc, labels); err != nil {
		return err
	}
	rec, err := s.client.ImageService().Get(ctx, name)
	if err != nil {
		return fmt.Errorf("get image record %s: %w", name, err)
	}
	s.forget(rec.Target.Digest)
	if err := s.ensureUnpacked(ctx, containerd.NewImage(s.client, rec)); err != nil {
		return err
	}
	return s.addNames(ctx, rec, b.config.desc.Digest, labels)
}

// layerFile is a regular file of a built image, root-owned.
type layerFile struct {
	path string // relative to the image root
	mode int64
	data []byte
}

// blob is a piece of image content with its descriptor.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

// builtImage is a single-layer OCI image held in memory.
type builtImage struct {
	manifest blob
	config   blob
	layers   []blob
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

// buildImage builds a linux image for this machine's architecture whose
// single uncompressed layer holds files (and their parent directories),
// byte for byte reproducible from its inputs.
func buildImage(files []layerFile, cfg ocispec.ImageConfig) (*builtImage, error) {
	layerData, err := layerTar(files)
	if err != nil {
		return nil, err
	}
	layer := newBlob(ocispec.MediaTypeImageLayer, layerData)
	created := buildTime
	spec := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.desc.Digest}},
		History:  []ocispec.History{{Created: &created, CreatedBy: "crishim"}},
	}
	configData, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode image config: %w", err)
	}
	config := newBlob(ocispec.MediaTypeImageConfig, configData)
	manifestData, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.desc,
		Layers:    []ocispec.Descriptor{layer.desc},
	})
	if err != nil {
		return nil, fmt.Errorf("encode image manifest: %w", err)
	}
	return &builtImage{
		manifest: newBlob(ocispec.MediaTypeImageManifest, manifestData),
		config:   config,
		layers:   []blob{layer},
	}, nil
}

// layerTar writes files into a tar stream in a fixed order, creating the
// directories above them first.
func layerTar(files []layerFile) ([]byte, error) {
	dirs := map[string]bool{}
	byPath := map[string]layerFile{}
	for _, f := range files {
		p := path.Clean(strings.TrimPrefix(f.path, "/"))
		if p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return nil, fmt.Errorf("layer file %q: not a path inside the image: %w", f.path, errdefs.ErrInvalidArgument)
		}
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("layer file %q given twice: %w", p, errdefs.ErrInvalidArgument)
		}
		byPath[p] = f
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		path string
		dir  bool
	}
	var entries []entry
	for d := range dirs {
		if _, clash := byPath[d]; clash {
			return nil, fmt.Errorf("layer path %q is both a file and a directory: %w", d, errdefs.ErrInvalidArgument)
		}
		entries = append(entries, entry{d, true})
	}
	for p := range byPath {
		entries = append(entries, entry{p, false})
	}
	// Lexical order puts every directory before what it contains.
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.path, ModTime: buildTime, Format: tar.FormatPAX}
		if e.dir {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, e.path+"/", 0o755
		} else {
			f := byPath[e.path]
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.mode, int64(len(f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer tar %s: %w", e.path, err)
		}
		if !e.dir {
			if _, err := tw.Write(byPath[e.path].data); err != nil {
				return nil, fmt.Errorf("layer tar %s: %w", e.path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	return buf.Bytes(), nil
}
