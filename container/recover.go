package container

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/container/taskio"
	crishimpb "github.com/crishim/crishim/proto"
)

func decodeExtension(exts map[string]typeurl.Any, key string, msg proto.Message) error {
	a, ok := exts[key]
	if !ok || a == nil {
		return fmt.Errorf("extension %s: %w", key, errdefs.ErrNotFound)
	}
	return proto.Unmarshal(a.GetValue(), msg)
}

// Recover rebuilds the in-memory state from containerd after a restart and
// reattaches to the IO of running containers.
func (m *Manager) Recover(ctx context.Context) error {
	ctx = m.nsCtx(ctx)
	// Following events before reattaching: an OOM kill from now on is seen.
	m.startTaskEvents()
	// What a crash left half made goes first, so it is not recovered.
	m.undoInterrupted(ctx)
	list, err := m.client.Containers(ctx, fmt.Sprintf("labels.%q==%s", LabelKind, KindContainer))
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range list {
		if err := m.recoverOne(ctx, c); err != nil {
			// One broken container must not keep crishim from serving the rest.
			m.log().WithError(err).WithField("container", c.ID()).Warn("could not recover container")
		}
	}
	return nil
}

func (m *Manager) recoverOne(ctx context.Context, c containerd.Container) error {
	exts, err := c.Extensions(ctx)
	if err != nil {
		return err
	}
	rec := &crishimpb.ContainerRecord{}
	if err := decodeExtension(exts, ExtensionRecord, rec); err != nil {
		return err
	}
	status := &crishimpb.ContainerStatusRecord{}
	if err := decodeExtension(exts, ExtensionStatus, status); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	cfg := &runtime.ContainerConfig{}
	if err := proto.Unmarshal(rec.Config, cfg); err != nil {
		return fmt.Errorf("decode container config: %w", err)
	}
	log := m.log().WithFields(logrus.Fields{"pod": rec.SandboxId, "container": c.ID()})
	if status.Removing {
		// crishim went down half way through a removal: finish it.
		log.Info("finishing interrupted removal")
		return m.deleteContainer(ctx, c.ID())
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	e := &entry{id: c.ID(), rec: rec, cfg: cfg, spec: spec, exited: make(chan struct{}), exitEvent: make(chan struct{}), status: status}
	switch {
	case status.FinishedAt != 0:
		e.state = runtime.ContainerState_CONTAINER_EXITED
	case status.StartedAt != 0:
		e.state = runtime.ContainerState_CONTAINER_RUNNING
	default:
		e.state = runtime.ContainerState_CONTAINER_CREATED
	}
	if e.state == runtime.ContainerState_CONTAINER_EXITED {
		close(e.exited)
	}
	m.mu.Lock()
	m.containers[e.id] = e
	m.mu.Unlock()
	if other, ok := m.names.Add(rec.Name, e.id); !ok {
		log.WithField("other", other).Warn("two containers recorded with the same name")
	}

	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		if e.state == runtime.ContainerState_CONTAINER_RUNNING {
			// Started, but its task is gone and nobody saw the exit.
			log.Warn("running container lost its task")
			m.finishExit(ctx, e, nil, exitCodeUnknown, time.Now(), ReasonUnknown, "container exited while crishim was not running")
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("load task: %w", err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("task status: %w", err)
	}
	switch st.Status {
	case containerd.Running, containerd.Paused, containerd.Pausing:
		var started *crishimpb.ContainerStatusRecord
		if e.state != runtime.ContainerState_CONTAINER_RUNNING {
			// The start was recorded only in the task (crash right after).
			e.state = runtime.ContainerState_CONTAINER_RUNNING
			status.StartedAt = time.Now().UnixNano()
			started = proto.Clone(status).(*crishimpb.ContainerStatusRecord)
		}
		task, err = c.Task(ctx, func(fifos *cio.FIFOSet) (cio.IO, error) {
			tio, err := taskio.Open(fifos.Config, rec.LogPath, log, m.cfg.ObserveLogDrop)
			if err != nil {
				return nil, err
			}
			return tio, nil
		})
		if err != nil {
			return fmt.Errorf("reattach task IO: %w", err)
		}
		e.mu.Lock()
		e.pid = task.Pid()
		if tio, ok := task.IO().(*taskio.IO); ok {
			e.io = tio
		}
		e.mu.Unlock()
		go m.monitor(e, task, started)
		log.Info("reattached to running container")
	case containerd.Stopped:
		e.state = runtime.ContainerState_CONTAINER_RUNNING
		// Its exit event is long gone, but its cgroup is still there.
		reason := ReasonCompleted
		if st.ExitStatus != 0 {
			reason = ReasonError
			if m.oomKilled(spec) {
				reason = ReasonOOMKilled
			}
		}
		m.finishExit(ctx, e, task, st.ExitStatus, st.ExitTime, reason, "")
	default:
		// Created but never started (crash inside Start), or unknown.
		m.finishExit(ctx, e, task, exitCodeUnknown, time.Now(), ReasonUnknown, fmt.Sprintf("task left in state %q", st.Status))
	}
	return nil
}
