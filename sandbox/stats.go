package sandbox

import (
	"context"
	"fmt"
	"sort"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/cgroup"
	"github.com/crishim/crishim/internal/stats"
)

// StatsIDs lists the ready pods matching filter, oldest first: a stopped
// pod has no processes left to measure.
func (m *Manager) StatsIDs(filter *runtime.PodSandboxStatsFilter) []string {
	var ps []*pod
	all := m.store.all()
	for _, p := range all {
		if p.getState() != stateReady {
			continue
		}
		if f := filter.GetId(); f != "" && p.id != f {
			continue
		}
		ok := true
		for k, v := range filter.GetLabelSelector() {
			if got, has := p.cfg.GetLabels()[k]; !has || got != v {
				ok = false
				break
			}
		}
		if ok {
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].createdAt.Before(ps[j].createdAt) })
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.id
	}
	m.cpu.Forget(func(id string) bool {
		_, ok := m.store.get(id)
		return ok
	})
	return ids
}

// Stats reports pod id: its CPU, memory and process count are the pause
// container's plus those of its containers (given as their stats and the
// sum of their samples), its network the pause's namespace's counters.
func (m *Manager) Stats(ctx context.Context, id string, containers []*runtime.ContainerStats, containerSum stats.Sample) (*runtime.PodSandboxStats, error) {
	p, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	ready, pid, netns := p.state == stateReady, p.pid, p.netnsPath
	parent := p.cfg.GetLinux().GetCgroupParent()
	attrs := &runtime.PodSandboxAttributes{
		Id:          p.id,
		Metadata:    proto.Clone(p.cfg.GetMetadata()).(*runtime.PodSandboxMetadata),
		Labels:      copyMap(p.cfg.GetLabels()),
		Annotations: copyMap(p.cfg.GetAnnotations()),
	}
	p.mu.Unlock()

	out := &runtime.PodSandboxStats{Attributes: attrs, Linux: &runtime.LinuxPodSandboxStats{Containers: containers}}
	if !ready {
		return out, nil
	}
	pause, err := m.pauseSample(m.withNS(ctx), p.id, parent)
	if err != nil {
		return nil, err
	}
	total := pause.Add(containerSum)
	if total.At.IsZero() {
		total.At = time.Now()
	}
	out.Linux.Cpu = total.CPUUsage(m.cpu.Observe(p.id, total.At, total.CPU))
	out.Linux.Memory = total.MemoryUsageCRI()
	out.Linux.Process = &runtime.ProcessUsage{Timestamp: total.At.UnixNano(), ProcessCount: &runtime.UInt64Value{Value: total.Processes}}
	if netns != "" && pid != 0 {
		if net, err := stats.ReadNetDev(pid, time.Now()); err == nil {
			out.Linux.Network = net
		} else {
			m.logger(p.id).WithError(err).Debug("pod network counters")
		}
	}
	return out, nil
}

// pauseSample reads the pause container's cgroup from its files, or
// through containerd (a round trip to the pod's shim) when they are not
// where the pause's spec put them.
func (m *Manager) pauseSample(ctx context.Context, id, parent string) (stats.Sample, error) {
	if dir, err := cgroup.Path(cgroup.OCIPath(m.cfg.CgroupDriver, parent, id), m.cfg.CgroupDriver); err == nil {
		if s, err := stats.ReadCgroup(cgroup.Root, dir, m.cgroupV2, true, time.Now()); err == nil {
			return s, nil
		}
	}
	resp, err := m.client.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: []string{"id==" + id}})
	if err != nil {
		return stats.Sample{}, fmt.Errorf("metrics of pause container of pod %s: %w", id, errdefs.FromGRPC(err))
	}
	for _, mt := range resp.Metrics {
		if mt.GetID() != id || mt.GetData() == nil {
			continue
		}
		at := time.Now()
		if ts := mt.GetTimestamp(); ts != nil {
			at = ts.AsTime()
		}
		return stats.Decode(mt.GetData().GetTypeUrl(), mt.GetData().GetValue(), at)
	}
	return stats.Sample{At: time.Now()}, nil
}
