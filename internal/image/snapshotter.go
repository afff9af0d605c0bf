package image

import (
	"context"
	"strings"
	"time"

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

// PeriodicUsageReuse is how old a writable layer's measurement the
// kubelet's periodic calls - ImageFsInfo, and the stats of every container
// or of a pod - still get rather than a walk of the layer. The kubelet
// makes them together about every 10 s, walking the same layers: walking
// each layer for each of them was the largest part of crishim's CPU on an
// idle node. With one bound for all, a layer is walked about every other
// round and reported up to 15 s late; containerd's CRI plugin reports
// usage it collects every 10 s. Calls about one container walk afresh.
const PeriodicUsageReuse = 15 * time.Second

// layer is what crishim knows of an active overlayfs snapshot.
type layer struct {
	dir string // the upper directory, found once from the mounts
	// usage is the last walk of dir, at measuredAt.
	usage      snapshots.Usage
	measuredAt time.Time
	// sealedAt is when the snapshot became a read-only root (SealUsage);
	// a walk after it stays true for the snapshot's life.
	sealedAt time.Time
}

// final tells whether l's usage can no longer change.
func (l *layer) final() bool {
	return !l.sealedAt.IsZero() && l.measuredAt.After(l.sealedAt)
}

// SealUsage records that snapshot key is from now on mounted read-only
// as a container's root: runc has made its mount points in it, and
// nothing can write to it any more, so one more walk is its usage for
// good. The pause containers' roots are, which halves the layers
// ImageFsInfo walks.
func (s *Service) SealUsage(key string) {
	if s.cfg.Snapshotter != overlayfs {
		return
	}
	now := time.Now()
	s.layersMu.Lock()
	defer s.layersMu.Unlock()
	if l, ok := s.layers[key]; ok {
		if l.sealedAt.IsZero() {
			l.sealedAt = now
		}
		return
	}
	s.layers[key] = &layer{sealedAt: now}
}

// RecentUsage is the space and inodes that active snapshot key (a
// container's writable layer, a pause's root) uses, as a measurement
// younger than maxAge, or a final one, if there is one. For the overlayfs
// snapshotter containerd computes usage as a walk of the snapshot's upper
// directory; crishim walks that directory itself, found once from the
// snapshot's mounts, which spares the kubelet's periodic container stats
// and ImageFsInfo a containerd round trip per layer. Other snapshotters,
// and a directory that went away, are asked of containerd.
func (s *Service) RecentUsage(ctx context.Context, key string, maxAge time.Duration) (snapshots.Usage, error) {
	sn := s.client.SnapshotService(s.cfg.Snapshotter)
	if s.cfg.Snapshotter != overlayfs {
		return sn.Usage(ctx, key)
	}
	s.layersMu.Lock()
	l, ok := s.layers[key]
	var dir string
	if ok {
		if l.final() || (maxAge > 0 && !l.measuredAt.IsZero() && time.Since(l.measuredAt) < maxAge) {
			u := l.usage
			s.layersMu.Unlock()
			return u, nil
		}
		dir = l.dir
	}
	s.layersMu.Unlock()
	if dir == "" {
		mounts, err := sn.Mounts(ctx, key)
		if err != nil {
			return snapshots.Usage{}, err
		}
		if dir = upperDir(mounts); dir == "" {
			return sn.Usage(ctx, key)
		}
	}
	start := time.Now()
	du, err := fs.DiskUsage(ctx, dir)
	if err != nil {
		// Removed, or removed and made again under the same key.
		s.forgetLayer(key)
		return sn.Usage(ctx, key)
	}
	s.layersMu.Lock()
	if l, ok = s.layers[key]; !ok {
		l = &layer{}
		s.layers[key] = l
	}
	l.dir = dir
	// The walk's start is its time: a write during it may be missed, so
	// only a walk begun after the seal is final.
	if start.After(l.measuredAt) {
		l.usage, l.measuredAt = snapshots.Usage(du), start
	}
	s.layersMu.Unlock()
	return snapshots.Usage(du), nil
}

func (s *Service) forgetLayer(key string) {
	s.layersMu.Lock()
	delete(s.layers, key)
	s.layersMu.Unlock()
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
