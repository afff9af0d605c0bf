package container

import (
	"context"
	"fmt"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/snapshots"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/cgroup"
	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/internal/runtimeopts"
	"github.com/crishim/crishim/internal/stats"
)

// snapshotterRooter is the optional part of the image service that names
// the filesystem writable layers live on.
type snapshotterRooter interface {
	SnapshotterRoot(ctx context.Context) string
}

// recentUsager is the optional part of the image service that measures a
// writable layer without asking containerd where it can, and reports a
// measurement younger than maxAge instead of walking the layer again.
type recentUsager interface {
	RecentUsage(ctx context.Context, key string, maxAge time.Duration) (snapshots.Usage, error)
}

// usageSealer is the optional part of the image service that learns when
// a snapshot has become a read-only root, whose usage then stays as it is.
type usageSealer interface {
	SealUsage(key string)
}

// sealRootUsage tells the image service that e's writable layer can no
// longer change, if its root is read-only: its task exists, so runc has
// made its mount points in it.
func (m *Manager) sealRootUsage(e *entry) {
	s, ok := m.images.(usageSealer)
	if !ok {
		return
	}
	if spec := e.currentSpec(); spec == nil || spec.Root == nil || !spec.Root.Readonly {
		return
	}
	s.SealUsage(e.id)
}

func (m *Manager) snapshotter() string { return runtimeopts.Snapshotter(m.cfg.Snapshotter) }

// Stats reports one container; a container without a running task has
// attributes and its writable layer only.
func (m *Manager) Stats(ctx context.Context, id string) (*runtime.ContainerStats, error) {
	e, err := m.get(id)
	if err != nil {
		return nil, err
	}
	out, _, err := m.statsOf(m.nsCtx(ctx), []*entry{e}, statsRead{})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// ListStats reports the running containers matching filter.
func (m *Manager) ListStats(ctx context.Context, filter *runtime.ContainerStatsFilter) ([]*runtime.ContainerStats, error) {
	m.mu.RLock()
	var entries []*entry
	for _, e := range m.containers {
		if statsFilterMatches(filter, e) {
			entries = append(entries, e)
		}
	}
	m.mu.RUnlock()
	entries = runningOnly(entries)
	read := statsRead{layerReuse: image.PeriodicUsageReuse}
	// One container's stats, like ContainerStats, see a write at once.
	if filter.GetId() != "" {
		read.layerReuse = 0
	}
	out, _, err := m.statsOf(m.nsCtx(ctx), entries, read)
	if err != nil {
		return nil, err
	}
	m.rates().Forget(func(id string) bool {
		_, err := m.get(id)
		return err == nil
	})
	return out, nil
}

// PodStats reports the running containers of pod podID and the sum of
// their cgroup samples, for pod stats.
func (m *Manager) PodStats(ctx context.Context, podID string) ([]*runtime.ContainerStats, stats.Sample, error) {
	read := statsRead{layerReuse: image.PeriodicUsageReuse, processes: true}
	out, samples, err := m.statsOf(m.nsCtx(ctx), runningOnly(m.podEntries(podID)), read)
	var sum stats.Sample
	for _, s := range samples {
		sum = sum.Add(s)
	}
	return out, sum, err
}

func runningOnly(entries []*entry) []*entry {
	out := entries[:0:0]
	for _, e := range entries {
		e.mu.Lock()
		running := e.state == runtime.ContainerState_CONTAINER_RUNNING
		e.mu.Unlock()
		if running {
			out = append(out, e)
		}
	}
	return out
}

func statsFilterMatches(f *runtime.ContainerStatsFilter, e *entry) bool {
	if f == nil {
		return true
	}
	// A stats filter is a list filter without the state: the list's
	// matching applies as is (it ignores the state when none is given).
	return matches(&runtime.ContainerFilter{
		Id:            f.GetId(),
		PodSandboxId:  f.GetPodSandboxId(),
		LabelSelector: f.GetLabelSelector(),
	}, e, runtime.ContainerState_CONTAINER_UNKNOWN)
}

// statsRead is what a stats call needs beyond what CRI's container stats
// carry.
type statsRead struct {
	// layerReuse is how old a writable layer's measurement may be.
	layerReuse time.Duration
	// processes asks for the cgroups' process counts, which only pod
	// stats report: one more file per container.
	processes bool
}

// statsOf reads the cgroups of all entries and adds each writable layer's
// usage, as read asks. Containers that are not running, or whose cgroup
// crishim cannot read where their spec put it, are asked of containerd,
// all in one call.
func (m *Manager) statsOf(ctx context.Context, entries []*entry, read statsRead) ([]*runtime.ContainerStats, map[string]stats.Sample, error) {
	if len(entries) == 0 {
		return nil, nil, nil
	}
	samples := make(map[string]stats.Sample, len(entries))
	var filters []string
	for _, e := range entries {
		if s, err := m.readCgroup(e, read.processes); err == nil {
			samples[e.id] = s
			continue
		}
		filters = append(filters, "id=="+e.id)
	}
	if len(filters) > 0 {
		if err := m.taskSamples(ctx, filters, samples); err != nil {
			return nil, nil, err
		}
	}
	fsRoot := ""
	if r, ok := m.images.(snapshotterRooter); ok {
		fsRoot = r.SnapshotterRoot(ctx)
	}
	usage := m.client.SnapshotService(m.snapshotter()).Usage
	if u, ok := m.images.(recentUsager); ok {
		usage = func(ctx context.Context, key string) (snapshots.Usage, error) {
			return u.RecentUsage(ctx, key, read.layerReuse)
		}
	}
	out := make([]*runtime.ContainerStats, 0, len(entries))
	for _, e := range entries {
		cs := &runtime.ContainerStats{Attributes: &runtime.ContainerAttributes{
			Id:          e.id,
			Metadata:    e.cfg.GetMetadata(),
			Labels:      e.cfg.GetLabels(),
			Annotations: e.cfg.GetAnnotations(),
		}}
		if s, ok := samples[e.id]; ok {
			cs.Cpu = s.CPUUsage(m.rates().Observe(e.id, s.At, s.CPU))
			cs.Memory = s.MemoryUsageCRI()
		}
		now := time.Now()
		if u, err := usage(ctx, e.id); err == nil {
			cs.WritableLayer = &runtime.FilesystemUsage{
				Timestamp:  now.UnixNano(),
				FsId:       &runtime.FilesystemIdentifier{Mountpoint: fsRoot},
				UsedBytes:  &runtime.UInt64Value{Value: uint64(max(u.Size, 0))},
				InodesUsed: &runtime.UInt64Value{Value: uint64(max(u.Inodes, 0))},
			}
		} else if !errdefs.IsNotFound(err) {
			m.log().WithError(err).WithField("container", e.id).Debug("writable layer usage")
		}
		out = append(out, cs)
	}
	return out, samples, nil
}

// readCgroup samples a running container's cgroup from its files, where
// its spec placed it, kept open from one call to the next. Other states go
// to containerd, which knows whether their task still has a cgroup to
// report.
func (m *Manager) readCgroup(e *entry, processes bool) (stats.Sample, error) {
	e.mu.Lock()
	state, files := e.state, e.cgroupFiles
	if state == runtime.ContainerState_CONTAINER_RUNNING && files == nil && e.spec != nil && e.spec.Linux != nil {
		dir, err := cgroup.Path(e.spec.Linux.CgroupsPath, m.cfg.CgroupDriver)
		if err != nil {
			e.mu.Unlock()
			return stats.Sample{}, err
		}
		files = stats.NewCgroupFiles(m.cgroupRoot, dir, m.cgroupV2)
		e.cgroupFiles = files
	}
	e.mu.Unlock()
	if state != runtime.ContainerState_CONTAINER_RUNNING {
		return stats.Sample{}, fmt.Errorf("container %s is not running", e.id)
	}
	if files == nil {
		return stats.Sample{}, fmt.Errorf("container %s has no linux spec", e.id)
	}
	return files.Read(processes, time.Now())
}

// taskSamples asks containerd for the task metrics matching filters, in
// one call, and adds them to samples.
func (m *Manager) taskSamples(ctx context.Context, filters []string, samples map[string]stats.Sample) error {
	resp, err := m.client.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: filters})
	if err != nil {
		return fmt.Errorf("task metrics: %w", errdefs.FromGRPC(err))
	}
	for _, mt := range resp.Metrics {
		if mt.GetData() == nil {
			continue
		}
		at := time.Now()
		if ts := mt.GetTimestamp(); ts != nil {
			at = ts.AsTime()
		}
		s, err := stats.Decode(mt.GetData().GetTypeUrl(), mt.GetData().GetValue(), at)
		if err != nil {
			m.log().WithError(err).WithField("container", mt.GetID()).Warn("decode task metrics")
			continue
		}
		samples[mt.GetID()] = s
	}
	return nil
}

// ImageNames maps container IDs to the image names their clients used,
// for metric labels.
func (m *Manager) ImageNames() map[string]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]string, len(m.containers))
	for id, e := range m.containers {
		out[id] = e.rec.ImageName
	}
	return out
}
