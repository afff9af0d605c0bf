package image

import (
	"context"
	"strings"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/continuity/fs"
)

// SnapshotterRoot is the directory of the snapshotter that holds image
// layers and container writable layers, the filesystem stats name.
func (s *Service) SnapshotterRoot(ctx context.Context) string { return s.snapshotterRoot(ctx) }

// overlayfs is the snapshotter whose active snapshots crishim measures
// itself.
const overlayfs = "overlayfs"

// ActiveUsage is the space and inodes that active snapshot key (a
// container's writable layer, a pause's root) uses. For the overlayfs
// snapshotter containerd computes it as a walk of the snapshot's upper
// directory; crishim walks that directory itself, found once from the
// snapshot's mounts, which spares the kubelet's periodic container stats
// and ImageFsInfo a containerd round trip per layer. Other snapshotters,
// and a directory that went away, are asked of containerd.
func (s *Service) ActiveUsage(ctx context.Context, key string) (snapshots.Usage, error) {
	sn := s.client.SnapshotService(s.cfg.Snapshotter)
	if s.cfg.Snapshotter != overlayfs {
		return sn.Usage(ctx, key)
	}
	s.upperMu.Lock()
	dir, ok := s.upperDirs[key]
	s.upperMu.Unlock()
	if !ok {
		mounts, err := sn.Mounts(ctx, key)
		if err != nil {
			return snapshots.Usage{}, err
		}
		if dir = upperDir(mounts); dir == "" {
			return sn.Usage(ctx, key)
		}
		s.upperMu.Lock()
		s.upperDirs[key] = dir
		s.upperMu.Unlock()
	}
	du, err := fs.DiskUsage(ctx, dir)
	if err != nil {
		// Removed, or removed and made again under the same key.
		s.forgetUpperDir(key)
		return sn.Usage(ctx, key)
	}
	return snapshots.Usage(du), nil
}

func (s *Service) forgetUpperDir(key string) {
	s.upperMu.Lock()
	delete(s.upperDirs, key)
	s.upperMu.Unlock()
}

// upperDir is the writable directory of an overlayfs snapshot's mounts:
// the overlay's upperdir, or the bind-mounted directory of a snapshot
// without parents.
func upperDir(mounts []mount.Mount) string {
	if len(mounts) != 1 {
		return ""
	}
	m := mounts[0]
	switch m.Type {
	case "overlay":
		for _, o := range m.Options {
			if dir, ok := strings.CutPrefix(o, "upperdir="); ok {
				return dir
			}
		}
	case "bind":
		for _, o := range m.Options {
			if o == "ro" {
				return ""
			}
		}
		return m.Source
	}
	return ""
}
