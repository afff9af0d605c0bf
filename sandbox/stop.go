package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/faultpoint"
	"github.com/crishim/crishim/lifecycle"
	crishimpb "github.com/crishim/crishim/proto"
)

// Stop stops the pause container and tears down the network. The caller
// stops the pod's containers first. Absent is not an error.
func (m *Manager) Stop(ctx context.Context, id string) error {
	p, err := m.lookup(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx = m.withNS(ctx)
	p.op.Lock()
	defer p.op.Unlock()
	return m.stopLocked(ctx, p)
}

// stopLocked does Stop's work with p.op held. Each step is idempotent, so
// a Stop that failed halfway is completed by the next one.
func (m *Manager) stopLocked(ctx context.Context, p *pod) (retErr error) {
	m.mu.Lock()
	removed, stopped := p.removed, p.stopped
	if !removed && !stopped {
		p.stopping = true
	}
	m.mu.Unlock()
	// A stop that completed left nothing to redo; going through the steps
	// again costs RemovePodSandbox two round trips to containerd.
	if removed || stopped {
		return nil
	}
	log := m.logger(p.id)
	defer func() {
		if retErr != nil {
			m.stopFailed(p)
		}
	}()

	c, err := m.client.LoadContainer(ctx, p.id)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("load pause container of pod %s: %w", p.id, err)
	}
	if err == nil {
		if err := faultpoint.Hit("sandbox.beforeKillPause"); err != nil {
			return fmt.Errorf("stop pause container of pod %s: %w", p.id, err)
		}
		// The kill and delete get a context of their own: a client that
		// gives up (the kubelet cancels its calls when it shuts down or
		// its timeout runs out) must not cut containerd's delete short.
		// Abandoned halfway, containerd can keep a task the shim has
		// already dropped; the shim, told to shut down only after a
		// completed delete, then outlives the pod.
		kctx, cancel := m.cleanupContext()
		err := killPause(kctx, m.client, c)
		cancel()
		if err != nil {
			return fmt.Errorf("stop pause container of pod %s: %w", p.id, err)
		}
	} else {
		c = nil
	}
	m.mu.Lock()
	p.ready = false
	m.mu.Unlock()

	if err := faultpoint.Hit("sandbox.beforeTeardown"); err != nil {
		return err
	}
	if p.netnsPath != "" {
		if err := m.net.Teardown(ctx, p.id, p.netnsPath, p.cfg); err != nil {
			return fmt.Errorf("stop pod %s: %w", p.id, err)
		}
		if err := m.net.RemoveNetNS(p.netnsPath); err != nil {
			return fmt.Errorf("stop pod %s: %w", p.id, err)
		}
	}
	if !hostIPC(p.cfg) {
		if err := unmountShm(p.shmPath); err != nil {
			return fmt.Errorf("stop pod %s: %w", p.id, err)
		}
	}
	if c != nil {
		err := updateRecord(ctx, c, func(r *crishimpb.SandboxRecord) {
			r.Stopped, r.NetworkReady = true, false
		})
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("record stop of pod %s: %w", p.id, err)
		}
	}
	m.mu.Lock()
	p.stopped, p.stopping = true, false
	m.mu.Unlock()
	log.Info("pod sandbox stopped")
	if m.claimStopReport(p) {
		m.publish(p, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, nil)
	}
	return nil
}

// stopFailed hands the pause task back to its exit watcher after a Stop
// failed. Should the pause have exited meanwhile, the watcher has already
// left it to the Stop, so its work is done here.
func (m *Manager) stopFailed(p *pod) {
	m.mu.Lock()
	p.stopping = false
	exited := p.pauseExited
	m.mu.Unlock()
	if exited {
		m.pauseGone(p)
	}
}

// killPause kills the pause task and deletes it; containerd's CRI gives
// the pause no grace period either, it holds no state worth a SIGTERM.
func killPause(ctx context.Context, client *containerd.Client, c containerd.Container) error {
	t, err := c.Task(ctx, nil)
	if err == nil {
		_, err = t.Delete(ctx, containerd.WithProcessKill)
	}
	if err == nil {
		return nil
	}
	// Not found by the shim but maybe still held by containerd after an
	// earlier delete was abandoned, or the shim gone under a concurrent
	// delete (the exit watcher's): DeleteTask settles both.
	return lifecycle.DeleteTask(ctx, client, c.ID())
}

// Remove deletes a stopped-or-not sandbox and everything it owns; absent is not an error.
func (m *Manager) Remove(ctx context.Context, id string) error {
	p, err := m.lookup(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx = m.withNS(ctx)
	p.op.Lock()
	defer p.op.Unlock()
	if err := m.stopLocked(ctx, p); err != nil {
		return err
	}
	m.mu.RLock()
	removed := p.removed
	m.mu.RUnlock()
	if removed {
		return nil
	}
	final := m.finalStatus(p)
	// The stop deleted the pause task, and the pause container's snapshot
	// is keyed by the pod ID: delete both directly instead of loading the
	// container for containerd.Container.Delete (three round trips less).
	if err := m.client.SnapshotService(m.snapshotter()).Remove(ctx, p.id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete pause snapshot of pod %s: %w", p.id, err)
	}
	if err := m.client.ContainerService().Delete(ctx, p.id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete pause container of pod %s: %w", p.id, err)
	}
	for _, dir := range []string{p.dir, p.stateDir} {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove pod %s: %w", p.id, err)
		}
	}
	m.mu.Lock()
	p.removed = true
	delete(m.pods, p.id)
	m.mu.Unlock()
	m.names.Release(p.name, p.id)
	m.logger(p.id).Info("pod sandbox removed")
	m.publish(p, runtime.ContainerEventType_CONTAINER_DELETED_EVENT, final)
	return nil
}
