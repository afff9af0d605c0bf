package container

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/container/ocispec"
)

// currentSpec is the container's OCI spec as last created or updated.
// The pointer is replaced, never changed in place, so a caller may keep
// reading the spec it got.
func (e *entry) currentSpec() *specs.Spec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.spec
}

// UpdateResources changes a container's cgroup limits: in its persisted
// spec always, and in the running task when there is one. A created
// container gets them when it starts.
func (m *Manager) UpdateResources(ctx context.Context, id string, r *runtime.LinuxContainerResources) error {
	if r == nil {
		return nil // nothing asked for: Windows-only requests, for instance
	}
	e, err := m.get(id)
	if err != nil {
		return err
	}
	// Two concurrent updates would persist one spec and apply the other;
	// a removal must not come between the check and the update.
	unlock, err := e.lockOp(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	e.mu.Lock()
	state, old := e.state, e.spec
	e.mu.Unlock()
	if state != runtime.ContainerState_CONTAINER_CREATED && state != runtime.ContainerState_CONTAINER_RUNNING {
		return fmt.Errorf("container %s is %s: %w", e.id, stateName(state), errdefs.ErrFailedPrecondition)
	}
	updated, err := withUpdatedResources(old, r, m.ownOOMScoreAdj, m.cgroupCaps(cgroupParentOf(old, m.cfg.CgroupDriver)))
	if err != nil {
		return fmt.Errorf("resources of container %s: %w", e.id, err)
	}
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id})

	ctx = m.nsCtx(ctx)
	c, err := m.client.LoadContainer(ctx, e.id)
	if err != nil {
		return fmt.Errorf("load container %s: %w", e.id, err)
	}
	if err := c.Update(ctx, withSpec(updated)); err != nil {
		return fmt.Errorf("persist resources of container %s: %w", e.id, err)
	}
	if state == runtime.ContainerState_CONTAINER_RUNNING {
		if err := m.updateTask(ctx, c, updated.Linux.Resources); err != nil {
			// The task keeps its old limits, so must the record of them.
			cctx, cancel := m.cleanupCtx()
			defer cancel()
			if rerr := c.Update(cctx, withSpec(old)); rerr != nil {
				log.WithError(rerr).Warn("restore spec after failed resource update")
			}
			return fmt.Errorf("update resources of running container %s: %w", e.id, err)
		}
	}
	e.mu.Lock()
	e.spec = updated
	e.mu.Unlock()
	log.Info("container resources updated")
	return nil
}

func (m *Manager) updateTask(ctx context.Context, c containerd.Container, res *specs.LinuxResources) error {
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil // exited meanwhile: nothing left to limit
	}
	if err != nil {
		return err
	}
	return task.Update(ctx, containerd.WithResources(res))
}

// withUpdatedResources returns a copy of spec with r's limits. Fields r
// leaves zero keep their value, as containerd's CRI does: the kubelet
// always sends the whole set it wants.
func withUpdatedResources(spec *specs.Spec, r *runtime.LinuxContainerResources, ownOOM int, caps ocispec.Cgroups) (*specs.Spec, error) {
	if spec == nil {
		return nil, fmt.Errorf("container has no spec: %w", errdefs.ErrFailedPrecondition)
	}
	for _, v := range []int64{r.GetCpuPeriod(), r.GetCpuQuota(), r.GetCpuShares(), r.GetMemoryLimitInBytes()} {
		if v < 0 {
			return nil, fmt.Errorf("negative resource value %d: %w", v, errdefs.ErrInvalidArgument)
		}
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	out := &specs.Spec{}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, err
	}
	if out.Linux == nil {
		out.Linux = &specs.Linux{}
	}
	if out.Process == nil {
		out.Process = &specs.Process{}
	}
	old := out.Linux.Resources
	if len(r.GetHugepageLimits()) > 0 && old != nil {
		// Replaced as a whole, not appended to.
		old.HugepageLimits = nil
	}
	if err := ocispec.WithResources(r, ownOOM, caps)(context.Background(), nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// withSpec replaces a containerd container's stored spec.
func withSpec(s *specs.Spec) containerd.UpdateContainerOpts {
	return func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
		a, err := typeurl.MarshalAny(s)
		if err != nil {
			return fmt.Errorf("encode spec: %w", err)
		}
		c.Spec = a
		return nil
	}
}
