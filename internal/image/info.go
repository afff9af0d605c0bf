package image

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/images"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// imageInfo is what crishim derives from an image's manifest and config.
// It is a function of the record's target digest alone (content is
// immutable), which is what makes it safe to cache for the life of the
// process.
type imageInfo struct {
	id      digest.Digest // config digest: the CRI image ID
	size    int64
	spec    ocispec.Image
	chainID digest.Digest
	config  ImageConfig
}

// info returns the cached imageInfo for rec's target, reading the manifest
// and config from the content store on first use.
func (s *Service) info(ctx context.Context, rec images.Image) (*imageInfo, error) {
	key := rec.Target.Digest
	s.mu.Lock()
	cached := s.infos[key]
	s.mu.Unlock()
	if cached != nil {
		return cached, nil
	}

	img := containerd.NewImage(s.client, rec)
	cdesc, err := img.Config(ctx)
	if err != nil {
		return nil, fmt.Errorf("image %s: resolve config: %w", rec.Name, err)
	}
	raw, err := content.ReadBlob(ctx, s.client.ContentStore(), cdesc)
	if err != nil {
		return nil, fmt.Errorf("image %s: read config %s: %w", rec.Name, cdesc.Digest, err)
	}
	var spec ocispec.Image
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("image %s: parse config %s: %v", rec.Name, cdesc.Digest, err)
	}
	size, err := img.Size(ctx)
	if err != nil {
		return nil, fmt.Errorf("image %s: size: %w", rec.Name, err)
	}
	info := &imageInfo{
		id:      cdesc.Digest,
		size:    size,
		spec:    spec,
		chainID: identity.ChainID(spec.RootFS.DiffIDs),
		config:  imageConfigOf(spec.Config),
	}
	s.mu.Lock()
	s.infos[key] = info
	s.mu.Unlock()
	return info, nil
}

// forget drops cached knowledge of targets whose records are gone.
func (s *Service) forget(targets ...digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range targets {
		delete(s.infos, t)
		delete(s.unpacked, t)
	}
}

func imageConfigOf(c ocispec.ImageConfig) ImageConfig {
	return ImageConfig{
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        c.Env,
		WorkingDir: c.WorkingDir,
		User:       c.User,
		StopSignal: c.StopSignal,
		Volumes:    c.Volumes,
	}
}

// parseUser splits an image config's User ("uid", "name", "uid:gid",
// "name:group") into the CRI's uid or username; the group plays no part in
// image status.
func parseUser(user string) (*int64, string) {
	if user == "" {
		return nil, ""
	}
	user, _, _ = strings.Cut(user, ":")
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &uid, ""
	}
	return nil, user
}

// verboseInfo is the JSON ImageStatus returns under "info" when verbose.
type verboseInfo struct {
	ChainID   string        `json:"chainID"`
	ImageSpec ocispec.Image `json:"imageSpec"`
}
