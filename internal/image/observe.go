package image

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fetchCounter adds up the sizes of the blobs a pull is about to fetch.
// It runs before containerd's fetch handler, which skips blobs already in
// the content store, so only those absent yet are counted: the bytes a
// pull really brings over the network.
type fetchCounter struct {
	store content.Store
	bytes atomic.Int64
}

func (f *fetchCounter) handler() images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if _, err := f.store.Info(ctx, desc.Digest); errdefs.IsNotFound(err) {
			f.bytes.Add(desc.Size)
		}
		return nil, nil
	})
}

func (s *Service) observePull(f *fetchCounter, start time.Time, err error) {
	if s.cfg.ObservePull != nil {
		s.cfg.ObservePull(f.bytes.Load(), time.Since(start), err)
	}
}
