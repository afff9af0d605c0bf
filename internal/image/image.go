// Package image is crishim's image service: pulling through containerd with
// registry host configuration, listing, status, removal and the embedded
// pause image.
package image

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/runtimeopts"
)

const (
	// pinnedLabel marks the records of the sandbox image, which the kubelet
	// must never garbage-collect.
	pinnedLabel = "io.crishim.image.pinned"
	// refLabel on an ID-named record remembers the image's repo digest, so
	// that resolving an ID (what the kubelet passes to CreateContainer) needs
	// no scan of all images.
	refLabel = "io.crishim.image.ref"
)

// Config is what the image service needs from crishim's configuration.
type Config struct {
	// RegistryConfigDir is a containerd hosts.toml directory tree.
	RegistryConfigDir string
	// Snapshotter images are unpacked into.
	Snapshotter string
	// Root is crishim's persistent root.
	Root string
	// ContainerdRoot is containerd's root directory. ImageFsInfo asks
	// containerd where the snapshotter keeps its data and falls back to
	// <ContainerdRoot>/io.containerd.snapshotter.v1.<snapshotter>; empty
	// means /var/lib/containerd.
	ContainerdRoot string
	// ObservePull, when set, is told each pull's fetched bytes, duration
	// and outcome (for metrics).
	ObservePull func(bytes int64, took time.Duration, err error)
}

// Service implements the CRI image operations on one containerd namespace.
type Service struct {
	client *containerd.Client
	cfg    Config

	mu       sync.Mutex
	infos    map[digest.Digest]*imageInfo // by record target digest
	unpacked map[digest.Digest]bool       // targets known to be unpacked

	pullMu  sync.Mutex
	pulling map[string]*refLock // by normalized reference

	sandboxMu  sync.Mutex
	sandbox    *Local // the sandbox image once ensured
	sandboxRef string // the ref it was ensured for ("" = embedded)

	fsMu           sync.Mutex
	fsRoot         string
	committedUsage map[string]snapshots.Usage // committed snapshots never change

	layersMu sync.Mutex
	layers   map[string]*layer // active overlayfs snapshots crishim measures itself, by key

	index recordIndex
}

// New returns an image service; client must carry crishim's namespace as its default.
func New(client *containerd.Client, cfg Config) *Service {
	cfg.Snapshotter = runtimeopts.Snapshotter(cfg.Snapshotter)
	if cfg.ContainerdRoot == "" {
		cfg.ContainerdRoot = "/var/lib/containerd"
	}
	return &Service{
		client:         client,
		cfg:            cfg,
		infos:          map[digest.Digest]*imageInfo{},
		unpacked:       map[digest.Digest]bool{},
		pulling:        map[string]*refLock{},
		committedUsage: map[string]snapshots.Usage{},
		layers:         map[string]*layer{},
	}
}

// Pull fetches and unpacks ref and returns the image's ID (config digest).
func (s *Service) Pull(ctx context.Context, ref string, auth *runtime.AuthConfig, pod *runtime.PodSandboxConfig) (_ string, err error) {
	named, err := NormalizeRef(ref)
	if err != nil {
		return "", err
	}
	cred, err := parseAuth(auth)
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", ref, err)
	}
	log := logrus.WithFields(logrus.Fields{"rpc": "PullImage", "image": named.String()})
	if md := pod.GetMetadata(); md != nil {
		log = log.WithField("pod", md.Namespace+"/"+md.Name)
	}
	// Concurrent pulls of one image would fight over containerd's ingest
	// and unpack locks and back off for seconds; one at a time, the later
	// ones find the content present and finish at once.
	unlock, err := s.lockRef(ctx, named.String())
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", named, err)
	}
	defer unlock()
	log.Info("pulling image")
	start := time.Now()
	fetched := &fetchCounter{store: s.client.ContentStore()}
	defer func() { s.observePull(fetched, start, err) }()

	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: registryHosts(ctx, s.cfg.RegistryConfigDir, named, auth.GetServerAddress(), cred),
	})
	img, err := s.client.Pull(ctx, named.String(),
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(s.cfg.Snapshotter),
		containerd.WithImageHandler(fetched.handler()),
	)
	if err != nil {
		log.WithError(err).Warn("pull failed")
		return "", fmt.Errorf("pull %s: %w", named, err)
	}
	rec := img.Metadata()
	info, err := s.info(ctx, rec)
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", named, err)
	}
	if err := s.addNames(ctx, rec, info.id, nil); err != nil {
		return "", fmt.Errorf("pull %s: %w", named, err)
	}
	s.mu.Lock()
	s.unpacked[rec.Target.Digest] = true
	s.mu.Unlock()
	log.WithFields(logrus.Fields{"id": info.id.String(), "duration": time.Since(start).Round(time.Millisecond).String()}).Info("pulled image")
	return info.id.String(), nil
}

// refLock serialises the pulls of one reference; a channel rather than a
// mutex so that a waiting request can still be cancelled.
type refLock struct {
	held    chan struct{}
	waiters int
}

func (s *Service) lockRef(ctx context.Context, ref string) (unlock func(), err error) {
	s.pullMu.Lock()
	l := s.pulling[ref]
	if l == nil {
		l = &refLock{held: make(chan struct{}, 1)}
		s.pulling[ref] = l
	}
	l.waiters++
	s.pullMu.Unlock()
	release := func() {
		s.pullMu.Lock()
		l.waiters--
		if l.waiters == 0 {
			delete(s.pulling, ref)
		}
		s.pullMu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// addNames gives the image stored as rec its repo digest and ID names, so
// that it can be found by either, and merges labels into all three records.
func (s *Service) addNames(ctx context.Context, rec images.Image, id digest.Digest, labels map[string]string) error {
	digestName := repoDigest(rec.Name, rec.Target.Digest)
	idLabels := map[string]string{}
	for k, v := range labels {
		idLabels[k] = v
	}
	if digestName != "" {
		idLabels[refLabel] = digestName
	}
	names := []struct {
		name   string
		labels map[string]string
	}{{rec.Name, labels}, {digestName, labels}, {id.String(), idLabels}}
	for _, n := range names {
		if n.name == "" {
			continue
		}
		if err := s.putRecord(ctx, n.name, rec.Target, n.labels); err != nil {
			return err
		}
	}
	return nil
}

// putRecord makes name point at target with labels set, leaving other
// labels (a pin, say) alone.
func (s *Service) putRecord(ctx context.Context, name string, target ocispec.Descriptor, labels map[string]string) error {
	// Read and written in containerd itself, never in the index; the
	// index drops what it keeps once the write is done.
	defer s.index.changed()
	is := s.client.ImageService()
	for {
		existing, err := is.Get(ctx, name)
		if errdefs.IsNotFound(err) {
			_, err = is.Create(ctx, images.Image{Name: name, Target: target, Labels: labels})
			if errdefs.IsAlreadyExists(err) {
				continue // a concurrent pull created it: update instead
			}
			if err != nil {
				return fmt.Errorf("create image record %s: %w", name, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("get image record %s: %w", name, err)
		}
		var paths []string
		if existing.Target.Digest != target.Digest {
			paths = append(paths, "target")
		}
		for k, v := range labels {
			if existing.Labels[k] != v {
				paths = append(paths, "labels."+k)
			}
		}
		if len(paths) == 0 {
			return nil
		}
		_, err = is.Update(ctx, images.Image{Name: name, Target: target, Labels: labels}, paths...)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile: create it
		}
		if err != nil {
			return fmt.Errorf("update image record %s: %w", name, err)
		}
		return nil
	}
}

// group is one image as the CRI sees it: every record whose target has
// the same config digest.
type group struct {
	id      digest.Digest
	info    *imageInfo
	records []images.Image
}

func (g *group) pinned() bool {
	for _, r := range g.records {
		if r.Labels[pinnedLabel] == "true" {
			return true
		}
	}
	return false
}

func (g *group) toCRI() *runtime.Image {
	tags, digests := g.refs()
	img := &runtime.Image{
		Id:          g.id.String(),
		RepoTags:    tags,
		RepoDigests: digests,
		Size:        uint64(g.info.size),
		Spec:        &runtime.ImageSpec{Image: g.id.String()},
		Pinned:      g.pinned(),
	}
	uid, username := parseUser(g.info.spec.Config.User)
	if uid != nil {
		img.Uid = &runtime.Int64Value{Value: *uid}
	}
	img.Username = username
	return img
}

// groups reads every image record of the namespace and groups them by ID.
// Records whose content is incomplete (an interrupted pull or import) are
// not images yet and are skipped.
func (s *Service) groups(ctx context.Context) (map[digest.Digest]*group, error) {
	recs, err := s.listRecords(ctx)
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest]*group{}
	for _, rec := range recs {
		info, err := s.info(ctx, rec)
		if err != nil {
			logrus.WithError(err).WithField("image", rec.Name).Debug("skipping image record")
			continue
		}
		g := out[info.id]
		if g == nil {
			g = &group{id: info.id, info: info}
			out[info.id] = g
		}
		g.records = append(g.records, rec)
	}
	return out, nil
}

// find returns the image named by ref (a reference or a full ID) with all
// its records; errdefs.ErrNotFound when absent.
func (s *Service) find(ctx context.Context, ref string) (*group, error) {
	id, isID := parseID(ref)
	if !isID {
		named, err := NormalizeRef(ref)
		if err != nil {
			return nil, err
		}
		rec, err := s.getRecord(ctx, named.String())
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", named, err)
		}
		info, err := s.info(ctx, rec)
		if err != nil {
			return nil, err
		}
		id = info.id
	}
	all, err := s.groups(ctx)
	if err != nil {
		return nil, err
	}
	g := all[id]
	if g == nil {
		return nil, fmt.Errorf("image %s: %w", ref, errdefs.ErrNotFound)
	}
	return g, nil
}

// List returns the images matching filter (nil: all).
func (s *Service) List(ctx context.Context, filter *runtime.ImageFilter) ([]*runtime.Image, error) {
	if ref := filter.GetImage().GetImage(); ref != "" {
		g, err := s.find(ctx, ref)
		if errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) {
			return []*runtime.Image{}, nil
		}
		if err != nil {
			return nil, err
		}
		return []*runtime.Image{g.toCRI()}, nil
	}
	all, err := s.groups(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*runtime.Image, 0, len(all))
	for _, g := range all {
		out = append(out, g.toCRI())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

// Status returns the image named by spec (tag, digest reference or ID), or
// nil without error when it is not present; info is filled when verbose.
func (s *Service) Status(ctx context.Context, spec *runtime.ImageSpec, verbose bool) (*runtime.Image, map[string]string, error) {
	ref := spec.GetImage()
	if ref == "" {
		return nil, nil, fmt.Errorf("image status: no image given: %w", errdefs.ErrInvalidArgument)
	}
	g, err := s.find(ctx, ref)
	if errdefs.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("image status %s: %w", ref, err)
	}
	img := g.toCRI()
	if !verbose {
		return img, nil, nil
	}
	raw, err := json.Marshal(verboseInfo{ChainID: g.info.chainID.String(), ImageSpec: g.info.spec})
	if err != nil {
		return nil, nil, fmt.Errorf("image status %s: encode info: %v", ref, err)
	}
	return img, map[string]string{"info": string(raw)}, nil
}

// Remove deletes every name of the image named by spec; absent is not an error.
func (s *Service) Remove(ctx context.Context, spec *runtime.ImageSpec) error {
	ref := spec.GetImage()
	if ref == "" {
		return fmt.Errorf("remove image: no image given: %w", errdefs.ErrInvalidArgument)
	}
	g, err := s.find(ctx, ref)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	defer s.index.changed()
	is := s.client.ImageService()
	targets := make([]digest.Digest, 0, len(g.records))
	for i, rec := range g.records {
		var opts []images.DeleteOpt
		if i == len(g.records)-1 {
			// Collect the now unreferenced content and snapshots before
			// answering, so that ImageFsInfo reflects the removal.
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(ctx, rec.Name, opts...); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove image %s: delete %s: %w", ref, rec.Name, err)
		}
		targets = append(targets, rec.Target.Digest)
	}
	s.forget(targets...)
	s.sandboxMu.Lock()
	if s.sandbox != nil && s.sandbox.ID == g.id.String() {
		s.sandbox = nil
	}
	s.sandboxMu.Unlock()
	logrus.WithFields(logrus.Fields{"rpc": "RemoveImage", "image": ref, "id": g.id.String()}).Info("removed image")
	return nil
}

// Local is an image present in containerd, resolved for container creation.
type Local struct {
	Image containerd.Image
	// ID is the config digest, Ref the best reference to report
	// (repo digest when known, else the name it was found by).
	ID  string
	Ref string
	// Config is the image's OCI config (entrypoint, cmd, env, user, stop signal...).
	Config ImageConfig
	// ChainID names the image's top layer snapshot (the parent of every
	// container rootfs); empty when unknown.
	ChainID digest.Digest
}

// ImageConfig is the part of an OCI image config that container creation uses.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	StopSignal string
	Volumes    map[string]struct{}
}

// Get resolves a local image by reference or ID; errdefs.ErrNotFound when absent.
// The image is unpacked into the snapshotter if it is not yet, so that a
// container can be created from it.
func (s *Service) Get(ctx context.Context, ref string) (*Local, error) {
	rec, err := s.record(ctx, ref)
	if err != nil {
		return nil, err
	}
	info, err := s.info(ctx, rec)
	if err != nil {
		return nil, err
	}
	img := containerd.NewImage(s.client, rec)
	if err := s.ensureUnpacked(ctx, img); err != nil {
		return nil, err
	}
	local := &Local{Image: img, ID: info.id.String(), Ref: rec.Name, Config: info.config, ChainID: info.chainID}
	if _, isID := parseID(rec.Name); isID {
		local.Ref = rec.Labels[refLabel]
		if local.Ref == "" {
			local.Ref = s.anyRepoDigest(ctx, info.id)
		}
	} else if d := repoDigest(rec.Name, rec.Target.Digest); d != "" {
		local.Ref = d
	}
	return local, nil
}

// Present reports whether the image named by ref (reference or ID) is
// stored, without resolving its config.
func (s *Service) Present(ctx context.Context, ref string) (bool, error) {
	_, err := s.record(ctx, ref)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// record finds one image record for ref: by name, or for an ID by the
// record named after it, falling back to a scan for images crishim did
// not pull itself.
func (s *Service) record(ctx context.Context, ref string) (images.Image, error) {
	if id, isID := parseID(ref); isID {
		rec, err := s.getRecord(ctx, id.String())
		if err == nil {
			return rec, nil
		}
		if !errdefs.IsNotFound(err) {
			return images.Image{}, fmt.Errorf("image %s: %w", ref, err)
		}
		g, err := s.find(ctx, id.String())
		if err != nil {
			return images.Image{}, err
		}
		return g.records[0], nil
	}
	named, err := NormalizeRef(ref)
	if err != nil {
		return images.Image{}, err
	}
	rec, err := s.getRecord(ctx, named.String())
	if err != nil {
		return images.Image{}, fmt.Errorf("image %s: %w", named, err)
	}
	return rec, nil
}

// anyRepoDigest returns a repo digest of image id, or the ID itself when it
// has none (an image only known by ID).
func (s *Service) anyRepoDigest(ctx context.Context, id digest.Digest) string {
	g, err := s.find(ctx, id.String())
	if err != nil {
		return id.String()
	}
	if _, digests := g.refs(); len(digests) > 0 {
		return digests[0]
	}
	return id.String()
}

func (g *group) refs() (tags, digests []string) {
	recs := make([]nameRecord, 0, len(g.records))
	for _, r := range g.records {
		recs = append(recs, nameRecord{name: r.Name, target: r.Target.Digest})
	}
	return references(recs)
}

// ensureUnpacked unpacks img unless it is known to be unpacked already;
// images imported by other means (ctr, an interrupted pull) may not be.
func (s *Service) ensureUnpacked(ctx context.Context, img containerd.Image) error {
	key := img.Target().Digest
	s.mu.Lock()
	done := s.unpacked[key]
	s.mu.Unlock()
	if done {
		return nil
	}
	ok, err := img.IsUnpacked(ctx, s.cfg.Snapshotter)
	if err != nil {
		return fmt.Errorf("image %s: check unpacked: %w", img.Name(), err)
	}
	if !ok {
		if err := img.Unpack(ctx, s.cfg.Snapshotter); err != nil {
			return fmt.Errorf("image %s: unpack into %s: %w", img.Name(), s.cfg.Snapshotter, err)
		}
	}
	s.mu.Lock()
	s.unpacked[key] = true
	s.mu.Unlock()
	return nil
}

// Name is the name to report for a container made from img as spec asked:
// the name the client gave (user_specified_image, then image) while it
// still names img, else one of img's tags, else its ID. The kubelet asks
// for images by ID and keeps the pod spec's name in user_specified_image;
// `kubectl get pod` shows whatever this returns.
func (s *Service) Name(ctx context.Context, img *Local, spec *runtime.ImageSpec) string {
	for _, ref := range []string{spec.GetUserSpecifiedImage(), spec.GetImage()} {
		if ref == "" {
			continue
		}
		if _, isID := parseID(ref); isID {
			continue
		}
		rec, err := s.record(ctx, ref)
		if err != nil {
			continue
		}
		if info, err := s.info(ctx, rec); err == nil && info.id.String() == img.ID {
			return ref
		}
	}
	if g, err := s.find(ctx, img.ID); err == nil {
		if tags, _ := g.refs(); len(tags) > 0 {
			return tags[0]
		}
	}
	return img.ID
}
