package sandbox

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"

	"github.com/crishim/crishim/internal/faultpoint"
	"github.com/crishim/crishim/lifecycle"
)

// Stop stops the pause container and tears down the network. The caller
// stops the pod's containers first. Absent is not an error.
func (m *Manager) Stop(ctx context.Context, id string) error {
	p, err := m.lockPod(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer p.op.Unlock()
	return m.stopLocked(m.withNS(ctx), p)
}

// stopLocked does Stop's work with p.op held. Each step is idempotent, so
// a Stop that failed halfway is completed by the next one.
func (m *Manager) stopLocked(ctx context.Context, p *pod) (retErr error) {
	p.mu.Lock()
	done := p.state == stateStopped || p.state == stateRemoved
	if !done {
		p.stopping = true
	}
	p.mu.Unlock()
	// A stop that completed left nothing to redo; going through the steps
	// again costs RemovePodSandbox two round trips to containerd.
	if done {
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
	m.pauseKilled(p)

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
	if err := m.stopped(ctx, p, c); err != nil {
		return err
	}
	log.Info("pod sandbox stopped")
	return nil
}

// stopFailed hands the pause task back to its exit watcher after a Stop
// failed. Should the pause have exited meanwhile, the watcher has already
// left it to the Stop, so its work is done here.
func (m *Manager) stopFailed(p *pod) {
	p.mu.Lock()
	p.stopping = false
	exited := p.exited
	p.mu.Unlock()
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
		if err != nil && !errdefs.IsNotFound(err) {
			// WithProcessKill stops waiting for the exit when its wait
			// fails, as it can on a shim that was stalled, and the delete
			// then finds the pause still running.
			err = killThenDelete(ctx, t)
		}
	}
	if err == nil {
		return nil
	}
	// Not found by the shim but maybe still held by containerd after an
	// earlier delete was abandoned, or the shim gone under a concurrent
	// delete (the exit watcher's): DeleteTask settles both.
	return lifecycle.DeleteTask(ctx, client, c.ID())
}

// killThenDelete kills the task and deletes it once containerd reports it
// stopped, asking for the status instead of holding a wait.
func killThenDelete(ctx context.Context, t containerd.Task) error {
	if err := t.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill pause task: %w", err)
	}
	for {
		st, err := t.Status(ctx)
		if errdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pause task status: %w", err)
		}
		if st.Status == containerd.Stopped {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the pause task to stop: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, err := t.Delete(ctx)
	return err
}

// Remove deletes a stopped-or-not sandbox and everything it owns; absent is not an error.
func (m *Manager) Remove(ctx context.Context, id string) error {
	p, err := m.lockPod(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer p.op.Unlock()
	ctx = m.withNS(ctx)
	if err := m.stopLocked(ctx, p); err != nil {
		return err
	}
	if p.getState() == stateRemoved {
		return nil
	}
	// The stop deleted the pause task, and the pause container's snapshot
	// is keyed by the pod ID: delete both directly instead of loading the
	// container for containerd.Container.Delete (three round trips less).
	if err := m.client.SnapshotService(m.snapshotter()).Remove(ctx, p.id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete pause snapshot of pod %s: %w", p.id, err)
	}
	if err := m.removed(ctx, p); err != nil {
		return err
	}
	m.logger(p.id).Info("pod sandbox removed")
	return nil
}
