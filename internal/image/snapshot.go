package image

import (
	"context"
	"fmt"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"

	"github.com/crishim/crishim/internal/runtimeopts"
)

// WithNewSnapshot prepares container id's root filesystem on the image's
// cached chain ID. containerd.WithNewSnapshot reads the manifest and the
// config from the content store and asks for the snapshotter's
// capabilities on every call; measured (make bench), that is six round
// trips to containerd per container, one of which this keeps. A parent
// that went missing behind crishim's back is unpacked again, once.
// snapshotter applies unless an earlier option set one.
func (l *Local) WithNewSnapshot(id, snapshotter string) containerd.NewContainerOpts {
	if l.ChainID == "" {
		return containerd.WithNewSnapshot(id, l.Image)
	}
	return func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
		if c.Snapshotter == "" {
			c.Snapshotter = runtimeopts.Snapshotter(snapshotter)
		}
		sn := client.SnapshotService(c.Snapshotter)
		parent := l.ChainID.String()
		_, err := sn.Prepare(ctx, id, parent)
		if errdefs.IsNotFound(err) {
			if uerr := l.Image.Unpack(ctx, c.Snapshotter); uerr != nil {
				return fmt.Errorf("unpack image %s for %s: %w", l.Image.Name(), id, uerr)
			}
			_, err = sn.Prepare(ctx, id, parent)
		}
		if err != nil {
			return fmt.Errorf("prepare snapshot %s on %s: %w", id, parent, err)
		}
		c.SnapshotKey = id
		c.Image = l.Image.Name()
		return nil
	}
}
