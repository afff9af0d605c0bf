package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
)

// Recover rebuilds the in-memory state from containerd after a restart.
// Damaged or half-created objects are reported and skipped, not fatal:
// one bad pod must not keep the node from serving the others.
func (m *Manager) Recover(ctx context.Context) error {
	ctx = m.withNS(ctx)
	// What a crash left half made goes first, so it is not recovered as a pod.
	m.undoInterrupted(ctx)
	list, err := m.client.Containers(ctx, fmt.Sprintf("labels.%q==%s", LabelKind, KindSandbox))
	if err != nil {
		return fmt.Errorf("list sandboxes in containerd: %w", err)
	}
	for _, c := range list {
		if err := m.recoverOne(ctx, c); err != nil {
			m.logger(c.ID()).WithError(err).Warn("skip sandbox that cannot be recovered")
		}
	}
	m.finishInterruptedStops(ctx)
	m.removeOrphanNetNS()
	return nil
}

func (m *Manager) recoverOne(ctx context.Context, c containerd.Container) error {
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	rec, cfg, err := readRecord(info)
	if err != nil {
		return err
	}
	if rec.GetId() != c.ID() {
		return fmt.Errorf("record names sandbox %q", rec.GetId())
	}
	p := &pod{
		id:        c.ID(),
		name:      rec.GetName(),
		cfg:       cfg,
		handler:   rec.GetRuntimeHandler(),
		netnsPath: rec.GetNetnsPath(),
		dir:       m.podDir(c.ID()),
		stateDir:  m.stateDir(c.ID()),
		shmPath:   m.shmPathFor(c.ID(), cfg),
		image:     rec.GetSandboxImage(),
		createdAt: time.Unix(0, rec.GetCreatedAt()),
		ip:        rec.GetIp(),
		extraIPs:  rec.GetAdditionalIps(),
		stopped:   rec.GetStopped(),
	}
	if p.name == "" {
		p.name = nameKey(cfg.GetMetadata())
	}

	watch := false
	task, err := c.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
		// Created but never started, or its exit was already handled.
	case err != nil:
		return fmt.Errorf("load pause task: %w", err)
	default:
		p.pid = task.Pid()
		st, err := task.Status(ctx)
		if err != nil {
			return fmt.Errorf("pause task status: %w", err)
		}
		if st.Status == containerd.Running && !p.stopped {
			watch, p.ready = true, true
		}
	}

	ready := p.ready
	if other, ok := m.names.Add(p.name, p.id); !ok {
		m.logger(p.id).WithField("other", other).Warn("two sandboxes recorded with the same name")
	}
	m.mu.Lock()
	m.pods[p.id] = p
	m.mu.Unlock()
	if watch {
		go m.watch(p)
	}
	m.logger(p.id).WithField("ready", ready).Info("recovered pod sandbox")
	return nil
}
