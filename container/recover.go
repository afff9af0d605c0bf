package container

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/container/taskio"
	"github.com/crishim/crishim/internal/faultpoint"
	"github.com/crishim/crishim/lifecycle"
	crishimpb "github.com/crishim/crishim/proto"
)

const (
	// attachTimeout bounds one attempt to find a container's task and
	// re-attach to it: a shim that does not answer (stopped, wedged) must
	// not hold up crishim's start or a stop.
	attachTimeout = 10 * time.Second
	// recheckFirst and recheckMax space the re-checks of an UNKNOWN
	// container: soon after a transient failure, then at most twice a minute.
	recheckFirst = time.Second
	recheckMax   = 30 * time.Second
	// killUnknownWait bounds the wait for the exit of an UNKNOWN
	// container's task after SIGKILL.
	killUnknownWait = 30 * time.Second
)

func decodeExtension(exts map[string]typeurl.Any, key string, msg proto.Message) error {
	a, ok := exts[key]
	if !ok || a == nil {
		return fmt.Errorf("extension %s: %w", key, errdefs.ErrNotFound)
	}
	return proto.Unmarshal(a.GetValue(), msg)
}

// Recover rebuilds the in-memory state from containerd after a restart and
// reattaches to the IO of running containers. A container that cannot be
// fully recovered is kept, as UNKNOWN, and checked again until containerd
// answers: dropping it, or listing it RUNNING with nothing watching its
// task, would leave what it owns behind or make its stop hang.
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
			// What cannot be decoded cannot be served; the rest can.
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
	e := newEntry(c.ID(), rec, cfg, spec, status)
	m.mu.Lock()
	m.containers[e.id] = e
	m.mu.Unlock()
	if other, ok := m.names.Add(rec.Name, e.id); !ok {
		log.WithField("other", other).Warn("two containers recorded with the same name")
	}
	if e.state == runtime.ContainerState_CONTAINER_EXITED {
		close(e.exited)
		// Its exit is recorded; only a task its exit left behind can
		// remain, and RemoveContainer deletes that one too.
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	if err := m.attach(actx, e, c); err != nil {
		m.markUnknown(e, err)
		log.WithError(err).Warn("container state unknown: its task could not be recovered; checking again periodically")
		go m.recheck(e)
	}
	return nil
}

// attach finds e's task in containerd and settles e's state from it: a
// running task gets its IO re-attached and an exit monitor, an exited one
// is recorded, a missing one is an exit nobody saw (or, for a container
// never started, nothing). An error leaves e as it was.
func (m *Manager) attach(ctx context.Context, e *entry, c containerd.Container) error {
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id})
	if c == nil {
		var err error
		if c, err = m.client.LoadContainer(ctx, e.id); err != nil {
			return fmt.Errorf("load the container: %w", err)
		}
	}
	e.mu.Lock()
	started := e.status.GetStartedAt() != 0
	e.mu.Unlock()

	task, err := c.Task(ctx, nil)
	if err == nil {
		err = faultpoint.Hit("container.recoverTask")
	}
	if errdefs.IsNotFound(err) {
		if !started {
			m.markCreated(e)
			return nil
		}
		// Started, but its task is gone and nobody saw the exit.
		log.Warn("running container lost its task")
		m.finishExit(ctx, e, nil, exitCodeUnknown, time.Now(), ReasonUnknown, "container exited while crishim was not running")
		return nil
	} else if err != nil {
		return fmt.Errorf("find the task: %w", err)
	}
	st, err := task.Status(ctx)
	if err == nil {
		err = faultpoint.Hit("container.recoverStatus")
	}
	if err != nil {
		return fmt.Errorf("read the task's status: %w", err)
	}
	switch st.Status {
	case containerd.Running, containerd.Paused, containerd.Pausing:
		task, err = c.Task(ctx, func(fifos *cio.FIFOSet) (cio.IO, error) {
			if err := faultpoint.Hit("container.recoverIO"); err != nil {
				return nil, err
			}
			tio, err := taskio.Open(fifos.Config, e.rec.LogPath, log, m.cfg.ObserveLogDrop)
			if err != nil {
				return nil, err
			}
			return tio, nil
		})
		if err != nil {
			return fmt.Errorf("re-attach the task's IO: %w", err)
		}
		tio, _ := task.IO().(*taskio.IO)
		m.sealRootUsage(e)
		// A start recorded only in the task (crash right after it) is
		// persisted by the monitor.
		newStart := m.markRunning(e, task.Pid(), tio)
		m.exits.Go(func() { m.monitor(e, task, newStart) })
		log.Info("reattached to running container")
	case containerd.Stopped:
		// Its exit event is long gone, but its cgroup is still there.
		reason := ReasonCompleted
		if st.ExitStatus != 0 {
			reason = ReasonError
			if m.oomKilled(e.currentSpec()) {
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

// recheck tries again, with a growing pause, to recover an UNKNOWN
// container, until it is recovered, exits or is removed.
func (m *Manager) recheck(e *entry) {
	wait := recheckFirst
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-e.exited:
			return
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(m.nsCtx(context.Background()), attachTimeout)
		unlock, err := e.lockOp(ctx)
		if err == nil {
			if e.State() == runtime.ContainerState_CONTAINER_UNKNOWN {
				if err = m.attach(ctx, e, nil); err != nil {
					m.markUnknown(e, err)
				}
			}
			unlock()
		}
		cancel()
		if e.State() != runtime.ContainerState_CONTAINER_UNKNOWN || m.lookup(e.id) != e {
			return
		}
		m.log().WithError(err).WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id}).Debug("container still unknown")
		wait = min(2*wait, recheckMax)
		timer.Reset(wait)
	}
}

// settle gets an UNKNOWN container out of that state before it is stopped:
// one more attempt to recover it and, failing that, its task is killed and
// deleted through containerd's task service, which needs none of the steps
// that failed, and the exit recorded. haveOp says the caller holds e's
// operation lock.
func (m *Manager) settle(ctx context.Context, e *entry, haveOp bool) error {
	if !haveOp {
		unlock, err := e.lockOp(ctx)
		if err != nil {
			return err
		}
		defer unlock()
	}
	if e.State() != runtime.ContainerState_CONTAINER_UNKNOWN {
		return nil
	}
	actx, cancel := context.WithTimeout(m.nsCtx(ctx), attachTimeout)
	err := m.attach(actx, e, nil)
	cancel()
	if err == nil {
		return nil
	}
	return m.killUnknown(e, err)
}

// killUnknown kills and deletes the task of a container crishim cannot
// watch, on a context of its own (the stop must not be abandoned halfway
// because its client gave up), and records the exit.
func (m *Manager) killUnknown(e *entry, cause error) error {
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id})
	log.WithError(cause).Warn("killing a container whose state is unknown")
	ctx, cancel := m.cleanupCtx()
	defer cancel()
	code, exitedAt := uint32(exitCodeUnknown), time.Time{}
	_, err := m.client.TaskService().Kill(ctx, &tasks.KillRequest{ContainerID: e.id, Signal: uint32(syscall.SIGKILL), All: true})
	switch err = errdefs.FromGRPC(err); {
	case err == nil:
		wctx, wcancel := context.WithTimeout(ctx, killUnknownWait)
		st, werr := m.exits.Await(wctx, e.id, log)
		wcancel()
		switch {
		case werr == nil:
			code, exitedAt = st.ExitCode(), st.ExitTime()
		case !errdefs.IsNotFound(werr):
			return fmt.Errorf("wait for the killed task of container %s: %w", e.id, werr)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("kill the task of container %s: %w", e.id, err)
	}
	if err := lifecycle.DeleteTask(ctx, m.client, e.id); err != nil {
		return fmt.Errorf("delete the task of container %s: %w", e.id, err)
	}
	m.markExited(e, int32(code), exitedAt, ReasonUnknown, fmt.Sprintf("killed by crishim while its state was unknown (%v)", cause))
	return nil
}
