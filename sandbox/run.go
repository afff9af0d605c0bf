package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/faultpoint"
	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/internal/network"
	"github.com/crishim/crishim/internal/runtimeopts"
	"github.com/crishim/crishim/internal/undo"
	crishimpb "github.com/crishim/crishim/proto"
)

// checkHandler accepts the runtime handlers crishim serves: the default
// one, under its empty or its conventional name.
func (m *Manager) checkHandler(handler string) error {
	switch handler {
	case "", "runc", m.cfg.Runtime:
		return nil
	}
	return fmt.Errorf("runtime handler %q is not configured: %w", handler, errdefs.ErrInvalidArgument)
}

// run creates and starts pod sandbox id under the reserved name key (see
// Run). Until it succeeds, a journal entry names what it made, for
// Recover to undo after a crash.
func (m *Manager) run(ctx context.Context, id, key string, cfg *runtime.PodSandboxConfig, handler string) error {
	ctx = m.withNS(ctx)
	log := m.logger(id).WithField("name", key)
	started := time.Now()

	p := &pod{
		id:        id,
		name:      key,
		cfg:       cfg,
		handler:   handler,
		dir:       m.podDir(id),
		stateDir:  m.stateDir(id),
		shmPath:   m.shmPathFor(id, cfg),
		createdAt: started,
	}
	var undos undo.Stack
	succeeded, journalled := false, false
	defer func() {
		if succeeded {
			return
		}
		cctx, cancel := m.cleanupContext()
		defer cancel()
		err := undos.Run(cctx, log)
		if !journalled {
			return
		}
		if err != nil {
			// Most often a CNI plugin whose DEL fails as its ADD did: the
			// address stays taken until a DEL works. The journal entry
			// keeps the work, for retryUndo and for the next start.
			go m.retryUndo(id)
			return
		}
		if err := m.journal.Remove(id); err != nil {
			log.WithError(err).Warn("undo: remove journal entry")
		}
	}()
	intent := runIntent{ID: id}
	if err := intent.setConfig(cfg); err != nil {
		return err
	}
	if err := m.writeIntent(intent); err != nil {
		return err
	}
	journalled = true

	if err := m.preparePodFiles(p, &undos); err != nil {
		return err
	}

	// CNI ADD runs while the pause container is created and started.
	var waitNet func() (*network.Result, error)
	var netTook, pauseTook time.Duration // since started, for the log
	if !hostNetwork(cfg) {
		path, err := m.net.CreateNetNS(id)
		if err != nil {
			return err
		}
		p.netnsPath = path
		intent.NetNSPath = path
		if err := m.writeIntent(intent); err != nil {
			_ = m.net.RemoveNetNS(path)
			return err
		}
		undos.Add("remove netns", func(context.Context) error { return m.net.RemoveNetNS(path) })
		done := make(chan struct{})
		var res *network.Result
		var netErr error
		go func() {
			defer close(done)
			res, netErr = m.net.Setup(ctx, id, path, cfg)
			netTook = time.Since(started)
		}()
		waitNet = func() (*network.Result, error) { <-done; return res, netErr }
		undos.Add("tear down network", func(cctx context.Context) error {
			if _, err := waitNet(); err != nil && !errors.Is(err, network.ErrStillAttached) {
				return nil // a failed Setup released what it had
			}
			return m.net.Teardown(cctx, id, path, cfg)
		})
	}

	container, err := m.createPause(ctx, p, &undos)
	if err != nil {
		return err
	}

	// The pause process needs its netns to exist, not the interfaces in
	// it: its task (a shim, runc create and start: the longest step)
	// starts while CNI ADD finishes and the pod's address is recorded.
	startCh := make(chan pauseStart, 1)
	go func() {
		ps := m.startPauseAsync(ctx, container)
		pauseTook = time.Since(started)
		startCh <- ps
	}()
	netErr := m.finishNetwork(ctx, p, container, waitNet)
	ps := <-startCh
	undos = append(undos, ps.undo...)
	if ps.err != nil {
		return ps.err
	}
	if netErr != nil {
		return netErr
	}
	if err := faultpoint.Hit("sandbox.afterStart"); err != nil {
		return err
	}
	// Complete: from here on the pod is recovered, not undone, after a crash.
	if err := m.journal.Remove(id); err != nil {
		return err
	}

	succeeded = true
	m.started(p, ps.task.Pid())
	m.exits.Go(func() { m.watch(p) })
	log.WithFields(logrus.Fields{"ip": p.ip, "pid": p.pid, "took": time.Since(started),
		"network_ready_after": netTook, "pause_running_after": pauseTook}).Info("pod sandbox running")
	return nil
}

// preparePodFiles makes the pod's directories, its hostname, hosts and
// resolv.conf, and its /dev/shm.
func (m *Manager) preparePodFiles(p *pod, undos *undo.Stack) error {
	hostname, err := podHostname(p.cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("create sandbox dir: %w", err)
	}
	undos.Add("remove sandbox dir", func(context.Context) error { return os.RemoveAll(p.dir) })
	if err := writePodFiles(p.dir, p.cfg, hostname); err != nil {
		return err
	}
	if err := os.MkdirAll(p.stateDir, 0o700); err != nil {
		return fmt.Errorf("create sandbox state dir: %w", err)
	}
	undos.Add("remove sandbox state dir", func(context.Context) error { return os.RemoveAll(p.stateDir) })
	if !hostIPC(p.cfg) {
		if err := mountShm(p.shmPath); err != nil {
			return err
		}
		undos.Add("unmount shm", func(context.Context) error { return unmountShm(p.shmPath) })
	}
	return nil
}

// createPause creates the pause container with its snapshot.
func (m *Manager) createPause(ctx context.Context, p *pod, undos *undo.Stack) (containerd.Container, error) {
	local, err := m.images.EnsureSandboxImage(ctx, m.cfg.SandboxImage)
	if err != nil {
		return nil, fmt.Errorf("sandbox image for pod %s: %w", p.id, err)
	}
	if local == nil || local.Image == nil {
		return nil, fmt.Errorf("sandbox image for pod %s not available: %w", p.id, errdefs.ErrFailedPrecondition)
	}
	p.image = local.Image.Name()
	snapshotter := m.snapshotter()
	// The image service unpacked it when it resolved it; local.WithNewSnapshot
	// unpacks again should the layers have gone since.
	img, err := processImageOf(ctx, local)
	if err != nil {
		return nil, err
	}
	hostname, err := podHostname(p.cfg)
	if err != nil {
		return nil, err
	}
	specOpts, err := pauseSpec{
		ID:           p.id,
		Config:       p.cfg,
		Image:        img,
		NetNSPath:    p.netnsPath,
		Hostname:     hostname,
		CgroupDriver: m.cfg.CgroupDriver,
		OOMFloor:     m.oomFloor,
	}.specOpts()
	if err != nil {
		return nil, err
	}
	rec, err := newRecord(p)
	if err != nil {
		return nil, err
	}
	if err := writeRecordCopy(m.recordCopyPath(p.id), rec); err != nil {
		return nil, err
	}
	container, err := m.client.NewContainer(ctx, p.id,
		containerd.WithSnapshotter(snapshotter),
		local.WithNewSnapshot(p.id, snapshotter),
		containerd.WithImageName(local.Image.Name()),
		containerd.WithRuntime(runtimeopts.Name(m.cfg.Runtime), runtimeopts.Options(m.cfg.Runtime, m.cfg.CgroupDriver)),
		containerd.WithContainerLabels(map[string]string{LabelKind: KindSandbox}),
		containerd.WithContainerExtension(ExtensionRecord, rec),
		containerd.WithNewSpec(specOpts...),
	)
	if err != nil {
		return nil, fmt.Errorf("create pause container for pod %s: %w", p.id, err)
	}
	undos.Add("delete pause container", func(cctx context.Context) error {
		if err := container.Delete(cctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		return nil
	})
	return container, nil
}

// pauseStart is what startPauseAsync made: the running pause task and
// the undo of each step it completed.
type pauseStart struct {
	task containerd.Task
	undo undo.Stack
	err  error
}

// startPauseAsync is startPause with its undo steps kept apart, for Run
// to take over once it joins the network setup again.
func (m *Manager) startPauseAsync(ctx context.Context, c containerd.Container) pauseStart {
	var ps pauseStart
	if ps.err = faultpoint.Hit("sandbox.beforeStart"); ps.err != nil {
		return ps
	}
	ps.task, ps.err = m.startPause(ctx, c, &ps.undo)
	return ps
}

// finishNetwork waits for CNI ADD (waitNet nil: host network) and writes
// the pod's address to its hosts file and its record.
func (m *Manager) finishNetwork(ctx context.Context, p *pod, c containerd.Container, waitNet func() (*network.Result, error)) error {
	if waitNet == nil {
		return nil
	}
	res, err := waitNet()
	if err != nil {
		return err
	}
	if err := faultpoint.Hit("sandbox.afterNetwork"); err != nil {
		return err
	}
	p.ip, p.extraIPs = res.IP, res.AdditionalIPs
	hostname, err := podHostname(p.cfg)
	if err != nil {
		return err
	}
	if err := writeHosts(p.dir, p.cfg, hostname, p.ip); err != nil {
		return err
	}
	if err := updateRecord(ctx, c, p, func(r *crishimpb.SandboxRecord) {
		r.Ip, r.AdditionalIps, r.NetworkReady = res.IP, res.AdditionalIPs, true
	}); err != nil {
		return fmt.Errorf("record network of pod %s: %w", p.id, err)
	}
	return nil
}

// startPause starts the pause task with no stdio.
func (m *Manager) startPause(ctx context.Context, c containerd.Container, undos *undo.Stack) (containerd.Task, error) {
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		return nil, fmt.Errorf("create pause task for pod %s: %w", c.ID(), err)
	}
	undos.Add("delete pause task", func(cctx context.Context) error {
		if _, err := task.Delete(cctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		return nil
	})
	m.sealRootUsage(c.ID())
	if err := task.Start(ctx); err != nil {
		return nil, fmt.Errorf("start pause container for pod %s: %w", c.ID(), err)
	}
	return task, nil
}

// processImageOf takes the pause process from the image service's view of
// the image config, or reads the config itself when that view is empty.
func processImageOf(ctx context.Context, local *image.Local) (processImage, error) {
	c := local.Config
	if len(c.Entrypoint)+len(c.Cmd) == 0 {
		spec, err := local.Image.Spec(ctx)
		if err != nil {
			return processImage{}, fmt.Errorf("read config of sandbox image %s: %w", local.Image.Name(), err)
		}
		return processImage{
			Args: append(append([]string(nil), spec.Config.Entrypoint...), spec.Config.Cmd...),
			Env:  spec.Config.Env,
			Cwd:  spec.Config.WorkingDir,
			User: spec.Config.User,
		}, nil
	}
	return processImage{
		Args: append(append([]string(nil), c.Entrypoint...), c.Cmd...),
		Env:  c.Env,
		Cwd:  c.WorkingDir,
		User: c.User,
	}, nil
}

// watch follows the pause task until it exits (or is gone), then marks
// the pod not ready. Unless a Stop is under way, which does both itself,
// it reports the pod stopped and deletes the exited task.
func (m *Manager) watch(p *pod) {
	log := m.logger(p.id)
	switch st, err := m.exits.Await(m.withNS(context.Background()), p.id, log); {
	case err == nil:
		log.WithField("exit_code", st.ExitCode()).Info("pause container exited")
	case errdefs.IsNotFound(err):
		log.Warn("pause task gone without an exit status; its shim died or containerd lost it")
	default:
		// The manager is closing: the pod runs on, and the next crishim
		// finds it ready.
		log.WithError(err).Debug("no longer watching the pod")
		return
	}
	// A finished Stop deleted the task already.
	if m.pauseExited(p) {
		return
	}
	m.pauseGone(p)
}

// pauseGone reports a pod whose pause exited outside a Stop as stopped
// (once) and deletes the exited pause task.
func (m *Manager) pauseGone(p *pod) {
	if m.claimStopReport(p) {
		m.publish(p, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, nil)
	}
	ctx, cancelCleanup := m.cleanupContext()
	defer cancelCleanup()
	// Loaded again rather than held: a pod can run for months, and the
	// container's record carries its whole spec.
	if c, err := m.client.LoadContainer(ctx, p.id); err == nil {
		if t, err := c.Task(ctx, nil); err == nil {
			if _, err := t.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
				m.logger(p.id).WithError(err).Warn("delete exited pause task")
			}
		}
	}
}

// claimStopReport reports whether the caller is the one to publish the
// pod's STOPPED event.
func (m *Manager) claimStopReport(p *pod) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopReported {
		return false
	}
	p.stopReported = true
	return true
}
