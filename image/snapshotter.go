package image

import "context"

// SnapshotterRoot is the directory of the snapshotter that holds image
// layers and container writable layers, the filesystem stats name.
func (s *Service) SnapshotterRoot(ctx context.Context) string { return s.snapshotterRoot(ctx) }
