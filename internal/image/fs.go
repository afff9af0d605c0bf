package image

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/snapshots"
	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FsInfo reports the filesystem that holds image layers: the snapshotter's
// directory, with the space and inodes of every snapshot in crishim's
// namespace (image layers and container writable layers alike, as both
// live there and count against the kubelet's image filesystem).
func (s *Service) FsInfo(ctx context.Context) ([]*runtime.FilesystemUsage, error) {
	root := s.snapshotterRoot(ctx)
	sn := s.client.SnapshotService(s.cfg.Snapshotter)

	s.fsMu.Lock()
	defer s.fsMu.Unlock()
	var bytes, inodes int64
	seen := map[string]bool{}
	active := map[string]bool{}
	err := sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		committed := info.Kind == snapshots.KindCommitted
		if committed {
			seen[info.Name] = true
			if u, ok := s.committedUsage[info.Name]; ok {
				bytes += u.Size
				inodes += u.Inodes
				return nil
			}
		}
		var u snapshots.Usage
		var err error
		if info.Kind == snapshots.KindActive {
			active[info.Name] = true
			u, err = s.RecentUsage(ctx, info.Name, PeriodicUsageReuse)
		} else {
			u, err = sn.Usage(ctx, info.Name)
		}
		if errdefs.IsNotFound(err) {
			return nil // removed while we walked
		}
		if err != nil {
			return fmt.Errorf("usage of snapshot %s: %w", info.Name, err)
		}
		if committed {
			s.committedUsage[info.Name] = u
		}
		bytes += u.Size
		inodes += u.Inodes
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image fs info: %w", err)
	}
	for name := range s.committedUsage {
		if !seen[name] {
			delete(s.committedUsage, name)
		}
	}
	s.layersMu.Lock()
	for key := range s.layers {
		if !active[key] {
			delete(s.layers, key)
		}
	}
	s.layersMu.Unlock()
	return []*runtime.FilesystemUsage{{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: root},
		UsedBytes:  &runtime.UInt64Value{Value: uint64(max(bytes, 0))},
		InodesUsed: &runtime.UInt64Value{Value: uint64(max(inodes, 0))},
	}}, nil
}

// snapshotterRoot is the snapshotter's data directory as containerd
// exports it, or the conventional path under ContainerdRoot when the
// daemon does not say.
func (s *Service) snapshotterRoot(ctx context.Context) string {
	s.fsMu.Lock()
	root := s.fsRoot
	s.fsMu.Unlock()
	if root != "" {
		return root
	}
	filter := fmt.Sprintf("type==io.containerd.snapshotter.v1,id==%s", s.cfg.Snapshotter)
	resp, err := s.client.IntrospectionService().Plugins(ctx, []string{filter})
	if err == nil && len(resp.Plugins) > 0 && resp.Plugins[0].Exports["root"] != "" {
		root = resp.Plugins[0].Exports["root"]
	} else {
		if err != nil {
			logrus.WithError(err).Debug("introspect snapshotter root")
		}
		return filepath.Join(s.cfg.ContainerdRoot, "io.containerd.snapshotter.v1."+s.cfg.Snapshotter)
	}
	s.fsMu.Lock()
	s.fsRoot = root
	s.fsMu.Unlock()
	return root
}
