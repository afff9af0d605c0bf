package container

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	crishimpb "github.com/crishim/crishim/proto"
)

func stateName(s runtime.ContainerState) string {
	return strings.TrimPrefix(s.String(), "CONTAINER_")
}

// imageSpecOf is the image as the client asked for it (annotations, the
// user-specified name, runtime handler), named by the image's name rather
// than the ID the kubelet creates containers with.
func imageSpecOf(rec *crishimpb.ContainerRecord, cfg *runtime.ContainerConfig) *runtime.ImageSpec {
	spec := &runtime.ImageSpec{}
	if img := cfg.GetImage(); img != nil {
		spec = proto.Clone(img).(*runtime.ImageSpec)
	}
	if rec.ImageName != "" {
		spec.Image = rec.ImageName
	}
	return spec
}

// Status reports a container; info is filled when verbose.
func (m *Manager) Status(ctx context.Context, id string, verbose bool) (*runtime.ContainerStatus, map[string]string, error) {
	e, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	// The fields are read under the lock rather than the record cloned:
	// the kubelet asks for every container's status many times a minute.
	e.mu.Lock()
	state, pid := e.state, e.pid
	status := &crishimpb.ContainerStatusRecord{
		StartedAt:  e.status.GetStartedAt(),
		FinishedAt: e.status.GetFinishedAt(),
		ExitCode:   e.status.GetExitCode(),
		Reason:     e.status.GetReason(),
		Message:    e.status.GetMessage(),
		Removing:   e.status.GetRemoving(),
	}
	if state == runtime.ContainerState_CONTAINER_UNKNOWN {
		status.Reason, status.Message = e.unknownReason, e.unknownMessage
	}
	e.mu.Unlock()

	out := &runtime.ContainerStatus{
		Id:          e.id,
		Metadata:    e.cfg.GetMetadata(),
		State:       state,
		CreatedAt:   e.rec.CreatedAt,
		StartedAt:   status.GetStartedAt(),
		FinishedAt:  status.GetFinishedAt(),
		ExitCode:    status.GetExitCode(),
		Image:       e.image,
		ImageRef:    e.rec.ImageRef,
		ImageId:     e.rec.ImageId,
		Reason:      status.GetReason(),
		Message:     status.GetMessage(),
		Labels:      e.cfg.GetLabels(),
		Annotations: e.cfg.GetAnnotations(),
		Mounts:      e.cfg.GetMounts(),
		LogPath:     e.rec.LogPath,
		Resources:   e.resources(),
		User:        e.user(),
		StopSignal:  e.cfg.GetStopSignal(),
	}
	if !verbose {
		return out, nil, nil
	}
	info := map[string]interface{}{
		"sandboxID":   e.rec.SandboxId,
		"pid":         pid,
		"removing":    status.GetRemoving(),
		"snapshotKey": e.id,
		"snapshotter": m.snapshotter(),
		"runtimeType": m.cfg.Runtime,
		"stopSignal":  e.rec.StopSignal,
		"runtimeSpec": e.currentSpec(),
		"config":      e.cfg,
	}
	data, err := json.Marshal(info)
	if err != nil {
		return out, nil, nil
	}
	return out, map[string]string{"info": string(data)}, nil
}

// resources reports the container's cgroup settings from its spec.
func (e *entry) resources() *runtime.ContainerResources {
	spec := e.currentSpec()
	if spec == nil || spec.Linux == nil || spec.Linux.Resources == nil {
		return nil
	}
	r := spec.Linux.Resources
	out := &runtime.LinuxContainerResources{}
	if c := r.CPU; c != nil {
		if c.Period != nil {
			out.CpuPeriod = int64(*c.Period)
		}
		if c.Quota != nil {
			out.CpuQuota = *c.Quota
		}
		if c.Shares != nil {
			out.CpuShares = int64(*c.Shares)
		}
		out.CpusetCpus, out.CpusetMems = c.Cpus, c.Mems
	}
	if mem := r.Memory; mem != nil {
		if mem.Limit != nil {
			out.MemoryLimitInBytes = *mem.Limit
		}
		if mem.Swap != nil {
			out.MemorySwapLimitInBytes = *mem.Swap
		}
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &runtime.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		out.Unified = r.Unified
	}
	if p := spec.Process; p != nil && p.OOMScoreAdj != nil {
		out.OomScoreAdj = int64(*p.OOMScoreAdj)
	}
	return &runtime.ContainerResources{Linux: out}
}

// user reports the identity the container's process runs as.
func (e *entry) user() *runtime.ContainerUser {
	spec := e.currentSpec()
	if spec == nil || spec.Process == nil {
		return nil
	}
	u := spec.Process.User
	lu := &runtime.LinuxContainerUser{Uid: int64(u.UID), Gid: int64(u.GID)}
	for _, g := range u.AdditionalGids {
		lu.SupplementalGroups = append(lu.SupplementalGroups, int64(g))
	}
	return &runtime.ContainerUser{Linux: lu}
}

// List returns the containers matching filter (nil: all).
func (m *Manager) List(ctx context.Context, filter *runtime.ContainerFilter) ([]*runtime.Container, error) {
	m.mu.RLock()
	entries := make([]*entry, 0, len(m.containers))
	for _, e := range m.containers {
		entries = append(entries, e)
	}
	m.mu.RUnlock()

	var out []*runtime.Container
	for _, e := range entries {
		e.mu.Lock()
		c := e.listed
		e.mu.Unlock()
		if matches(filter, e, c.State) {
			out = append(out, c)
		}
	}
	// In a stable order, so that an unchanged list is answered with the
	// bytes sent before (server/codec.go).
	slices.SortFunc(out, func(a, b *runtime.Container) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.Id, b.Id))
	})
	return out, nil
}

func matches(f *runtime.ContainerFilter, e *entry, state runtime.ContainerState) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && e.id != f.GetId() {
		return false
	}
	if f.GetPodSandboxId() != "" && e.rec.SandboxId != f.GetPodSandboxId() {
		return false
	}
	if f.GetState() != nil && f.GetState().GetState() != state {
		return false
	}
	labels := e.cfg.GetLabels()
	for k, v := range f.GetLabelSelector() {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
