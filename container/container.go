// Package container creates and runs app containers inside pod sandboxes,
// composing their OCI spec (container/ocispec) and their stdio and CRI logs
// (container/taskio) with containerd's records and tasks; exec and attach.
package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/pkg/cap"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/container/ocispec"
	"github.com/crishim/crishim/container/taskio"
	"github.com/crishim/crishim/internal/cgroup"
	"github.com/crishim/crishim/internal/events"
	"github.com/crishim/crishim/internal/faultpoint"
	"github.com/crishim/crishim/internal/idprefix"
	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/internal/journal"
	"github.com/crishim/crishim/internal/names"
	"github.com/crishim/crishim/internal/oomscore"
	"github.com/crishim/crishim/internal/runtimeopts"
	"github.com/crishim/crishim/internal/stats"
	"github.com/crishim/crishim/internal/undo"
	"github.com/crishim/crishim/internal/userdb"
	"github.com/crishim/crishim/lifecycle"
	crishimpb "github.com/crishim/crishim/proto"
	"github.com/crishim/crishim/sandbox"
)

// Labels and extensions of the containerd container behind an app container.
const (
	LabelKind      = "io.crishim.kind"
	LabelSandboxID = "io.crishim.sandbox-id"
	KindContainer  = "container"

	ExtensionRecord = "crishim.container"
	ExtensionStatus = "crishim.container.status"

	// AnnotationTerminationGrace is the grace period (seconds) used when the
	// container is stopped without a timeout of its own (StopPod, Remove).
	AnnotationTerminationGrace = lifecycle.AnnotationTerminationGrace
)

// Exit reasons reported in ContainerStatus, as the kubelet knows them.
const (
	ReasonCompleted  = "Completed"
	ReasonError      = "Error"
	ReasonOOMKilled  = "OOMKilled"
	ReasonStartError = "StartError"
	ReasonUnknown    = "Unknown"

	// exitCodeUnknown is reported when crishim could not see an exit.
	exitCodeUnknown = 255
	// msgTaskLost explains an exit whose status containerd lost.
	msgTaskLost = "the container's task disappeared without an exit status: its shim died or containerd lost it"
	// exitCodeStartError mirrors what runtimes report for a process that
	// never ran.
	exitCodeStartError = 128
)

// Config is what the container manager needs from crishim's configuration.
type Config struct {
	Root         string // per-container persistent files under Root/containers/<id>
	State        string // FIFOs under State/containers/<id>
	CgroupDriver string
	Snapshotter  string
	Runtime      string
	// ObserveLogDrop, when set, is told the size of each log entry that
	// could not be written to a container's log file and was dropped.
	ObserveLogDrop func(bytes int)
}

// Sandboxes is what the manager needs of the sandbox manager.
type Sandboxes interface {
	Get(id string) (*sandbox.Sandbox, error)
}

// Images is what the manager needs of the image service.
type Images interface {
	Get(ctx context.Context, ref string) (*image.Local, error)
	Name(ctx context.Context, img *image.Local, spec *runtime.ImageSpec) string
}

// Manager owns every app container in crishim's containerd namespace.
type Manager struct {
	client    *containerd.Client
	images    Images
	sandboxes Sandboxes
	cfg       Config
	stopper   *lifecycle.Stopper
	exits     *lifecycle.Exits

	ownOOMScoreAdj int
	allCaps        []string
	cgroupV2       bool
	// cgroupRoot is where the cgroup hierarchies are mounted.
	cgroupRoot string

	mu         sync.RWMutex
	containers map[string]*entry
	// names maps unique name keys to IDs and answers retried Creates
	// (reserve.go); journal lists the Creates in progress.
	names   *names.Registry
	journal *journal.Journal

	// cpu keeps the previous CPU sample of each container for rates.
	cpu *stats.Rates
	// users keeps each image's /etc/passwd and /etc/group for spec
	// generation, which would otherwise mount every new container's root.
	users *userdb.Cache
	// events receives lifecycle transitions; nil until SetPublisher.
	events events.Publisher
	// eventsOnce starts the follower of containerd's task events, which
	// stopEvents ends (oom.go).
	eventsOnce sync.Once
	stopEvents context.CancelFunc
	// following is true while the task event stream is subscribed.
	following atomic.Bool
}

// userDBImages bounds the images whose user database copies are kept (a
// few KiB each); past it, the least recently used one is copied again when
// next needed.
const userDBImages = 256

// New returns a container manager; Recover must run before it serves requests.
func New(client *containerd.Client, images Images, sandboxes Sandboxes, cfg Config) *Manager {
	m := &Manager{
		client:     client,
		images:     images,
		sandboxes:  sandboxes,
		cfg:        cfg,
		stopper:    lifecycle.NewStopper(),
		containers: map[string]*entry{},
		names:      names.New("container", createTimeout),
		journal:    journal.New(filepath.Join(cfg.Root, "journal", "containers")),
		cpu:        stats.NewRates(),
		users:      userdb.New(filepath.Join(cfg.State, "userdb"), userDBImages),
		cgroupRoot: "/sys/fs/cgroup",
	}
	if client != nil {
		m.exits = lifecycle.NewExits(client, client.DefaultNamespace())
	}
	m.ownOOMScoreAdj = oomscore.Own()
	if caps, err := cap.Current(); err == nil {
		m.allCaps = caps
	}
	m.cgroupV2 = cgroup.V2()
	return m
}

func (m *Manager) log() *logrus.Entry { return logrus.WithField("component", "container") }

// nsCtx makes sure ctx names crishim's namespace: spec generation reads
// it from the context, not from the client default.
func (m *Manager) nsCtx(ctx context.Context) context.Context {
	if _, ok := namespaces.Namespace(ctx); ok {
		return ctx
	}
	return namespaces.WithNamespace(ctx, m.client.DefaultNamespace())
}

// cleanupCtx is a fresh context for undo and bookkeeping work that must
// happen even when the request that caused it is gone.
func (m *Manager) cleanupCtx() (context.Context, context.CancelFunc) {
	return undo.Context(m.client.DefaultNamespace())
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// nameKey is unique per container attempt in a pod, like the kubelet's
// own naming, so a retried CreateContainer cannot make a twin.
func nameKey(c *runtime.ContainerMetadata, p *runtime.PodSandboxMetadata) string {
	return strings.Join([]string{c.GetName(), p.GetName(), p.GetNamespace(), p.GetUid(), strconv.FormatUint(uint64(c.GetAttempt()), 10)}, "_")
}

// ResolveID returns the full ID of the container that id names, as its
// full ID or a unique prefix of it (see idprefix). The server resolves every
// ID a client sends here, once, so the rest of this package takes full IDs
// only: a prefix that one call resolved and another matched exactly once
// left a removed pod's containers behind.
func (m *Manager) ResolveID(id string) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, err := idprefix.Resolve(m.containers, id, "container")
	if err != nil {
		return "", err
	}
	return e.id, nil
}

// get finds a container by its full ID.
func (m *Manager) get(id string) (*entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if e, ok := m.containers[id]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
}

// resolveLogPath joins the pod's log directory and the container's
// relative log path, refusing paths that leave the directory.
func resolveLogPath(dir, rel string) (string, error) {
	if dir == "" || rel == "" {
		return "", nil
	}
	// The CRI defines log_path as relative to the pod's directory; an
	// absolute one is a client bug or an attempt to write elsewhere.
	if filepath.IsAbs(rel) {
		return "", fmt.Errorf("log path %q must be relative to the pod log directory %q: %w", rel, dir, errdefs.ErrInvalidArgument)
	}
	full := filepath.Join(dir, rel)
	r, err := filepath.Rel(filepath.Clean(dir), full)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") || r == "." {
		return "", fmt.Errorf("log path %q escapes the pod log directory %q: %w", rel, dir, errdefs.ErrInvalidArgument)
	}
	return full, nil
}

func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return strconv.Itoa(int(sig))
}

// create makes container id in pod podID under its reserved name (see
// Create). Until the container is complete a journal entry names it, for
// Recover to delete after a crash.
func (m *Manager) create(ctx context.Context, id, podID string, cfg *runtime.ContainerConfig, pod *runtime.PodSandboxConfig) (_ string, retErr error) {
	if err := validateConfig(cfg); err != nil {
		return "", err
	}
	sb, err := m.sandboxes.Get(podID)
	if err != nil {
		return "", fmt.Errorf("pod sandbox %s: %w", podID, err)
	}
	if !sb.Ready {
		return "", fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	if sb.Config != nil {
		pod = sb.Config
	}
	if sb.Config == nil {
		// Keep ocispec's view of the pod consistent with the request's.
		copied := *sb
		copied.Config = pod
		sb = &copied
	}
	logPath, err := resolveLogPath(pod.GetLogDirectory(), cfg.GetLogPath())
	if err != nil {
		return "", err
	}

	key := nameKey(cfg.GetMetadata(), pod.GetMetadata())
	log := m.log().WithFields(logrus.Fields{"pod": sb.ID, "container": id, "name": key})

	ctx = m.nsCtx(ctx)
	img, err := m.images.Get(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", fmt.Errorf("image %q for container %s: %w", cfg.GetImage().GetImage(), cfg.GetMetadata().GetName(), err)
	}
	stopSig, err := lifecycle.StopSignal(cfg.GetStopSignal(), img.Config.StopSignal)
	if err != nil {
		if cfg.GetStopSignal() != runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
			return "", err
		}
		log.WithError(err).Warn("image STOPSIGNAL unusable; using SIGTERM")
		stopSig = syscall.SIGTERM
	}

	var targetPID uint32
	if ns := ocispec.NamespaceOptions(cfg, pod); ns.GetPid() == runtime.NamespaceMode_TARGET {
		target, err := m.get(ns.GetTargetId())
		if err != nil {
			return "", fmt.Errorf("pid namespace target: %w", err)
		}
		target.mu.Lock()
		if target.state == runtime.ContainerState_CONTAINER_RUNNING {
			targetPID = target.pid
		}
		target.mu.Unlock()
	}
	imageName := m.images.Name(ctx, img, cfg.GetImage())
	hostname, _ := os.Hostname()
	opts, err := ocispec.Opts(ocispec.Input{
		ID: id, Config: cfg, Sandbox: sb, Image: img.Config, ImageName: imageName,
		TargetPID: targetPID, OwnOOMScoreAdj: m.ownOOMScoreAdj, AllCaps: m.allCaps,
		CgroupDriver: m.cfg.CgroupDriver, Cgroups: m.cgroupCaps(pod.GetLinux().GetCgroupParent()), Hostname: hostname,
		Users: m.users, ImageID: img.ID,
	})
	if err != nil {
		return "", fmt.Errorf("container %s spec: %w", cfg.GetMetadata().GetName(), err)
	}

	cfgBytes, err := proto.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode container config: %w", err)
	}
	now := time.Now()
	rec := &crishimpb.ContainerRecord{
		Id: id, SandboxId: sb.ID, Name: key, Config: cfgBytes,
		ImageName: imageName, ImageRef: img.Ref, ImageId: img.ID,
		LogPath: logPath, CreatedAt: now.UnixNano(), StopSignal: signalName(stopSig),
	}
	status := &crishimpb.ContainerStatusRecord{}

	// images.Get unpacked the image; img.WithNewSnapshot unpacks it again
	// should its layers have gone since.
	var spec *specs.Spec
	newOpts := []containerd.NewContainerOpts{
		containerd.WithSnapshotter(m.snapshotter()),
		img.WithNewSnapshot(id, m.snapshotter()),
		withNewSpec(&spec, opts...),
		containerd.WithRuntime(runtimeopts.Name(m.cfg.Runtime), runtimeopts.Options(m.cfg.Runtime, m.cfg.CgroupDriver)),
		containerd.WithContainerLabels(map[string]string{LabelKind: KindContainer, LabelSandboxID: sb.ID}),
		containerd.WithContainerExtension(ExtensionRecord, rec),
		containerd.WithContainerExtension(ExtensionStatus, status),
	}
	var undos undo.Stack
	defer func() {
		if retErr != nil {
			cctx, cancel := m.cleanupCtx()
			defer cancel()
			// Run logs each failure; the create's own error is the answer.
			_ = undos.Run(cctx, log)
		}
	}()
	if err := m.journal.Write(id, createIntent{ID: id}); err != nil {
		return "", err
	}
	// On success the entry goes before the container is published; on
	// failure once the undo of everything after it has run.
	undos.Add("remove journal entry", func(context.Context) error { return m.journal.Remove(id) })
	c, err := m.client.NewContainer(ctx, id, newOpts...)
	if err != nil {
		// The snapshot may have been prepared before the create failed.
		undos.Add("remove snapshot", func(cctx context.Context) error {
			if err := m.client.SnapshotService(m.snapshotter()).Remove(cctx, id); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
			return nil
		})
		return "", fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
	}
	undos.Add("delete container", func(cctx context.Context) error {
		if err := c.Delete(cctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		return nil
	})
	if err := faultpoint.Hit("container.afterCreate"); err != nil {
		return "", err
	}
	if err := m.journal.Remove(id); err != nil {
		return "", err
	}

	e := newEntry(id, rec, cfg, spec, status)
	m.mu.Lock()
	m.containers[id] = e
	m.mu.Unlock()
	log.Info("container created")
	m.publish(e, runtime.ContainerEventType_CONTAINER_CREATED_EVENT)
	return id, nil
}

// withNewSpec is containerd.WithNewSpec that also hands the spec back,
// sparing CreateContainer a round trip to read it from containerd.
func withNewSpec(out **specs.Spec, opts ...oci.SpecOpts) containerd.NewContainerOpts {
	return func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
		if _, ok := namespaces.Namespace(ctx); !ok {
			ctx = namespaces.WithNamespace(ctx, client.DefaultNamespace())
		}
		s, err := oci.GenerateSpec(ctx, client, c, opts...)
		if err != nil {
			return err
		}
		if c.Spec, err = typeurl.MarshalAny(s); err != nil {
			return err
		}
		*out = s
		return nil
	}
}

func (m *Manager) fifoDir(id string) string { return filepath.Join(m.cfg.State, "containers", id) }

// Start starts a created container.
func (m *Manager) Start(ctx context.Context, id string) error {
	e, err := m.get(id)
	if err != nil {
		return err
	}
	unlock, err := e.lockOp(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if e.removing() {
		return fmt.Errorf("container %s is being removed: %w", e.id, errdefs.ErrNotFound)
	}
	if state := e.State(); state != runtime.ContainerState_CONTAINER_CREATED {
		return fmt.Errorf("container %s is %s, not CREATED: %w", e.id, stateName(state), errdefs.ErrFailedPrecondition)
	}
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id})

	if sb, err := m.sandboxes.Get(e.rec.SandboxId); err != nil {
		return fmt.Errorf("pod sandbox of container %s: %w", e.id, err)
	} else if !sb.Ready {
		return fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}

	ctx = m.nsCtx(ctx)
	c, err := m.client.LoadContainer(ctx, e.id)
	if err != nil {
		return fmt.Errorf("load container %s: %w", e.id, err)
	}
	tio, err := taskio.Open(taskio.FIFOs(m.fifoDir(e.id), e.cfg.GetStdin(), e.cfg.GetTty()), e.rec.LogPath, log, m.cfg.ObserveLogDrop)
	if err != nil {
		m.recordStartFailure(e, err)
		return fmt.Errorf("container %s output: %w", e.id, err)
	}
	// The two steps are timed for the log: task creation (the shim's
	// runc create) is where a start spends most of its time.
	began := time.Now()
	task, err := c.NewTask(ctx, func(string) (cio.IO, error) { return tio, nil })
	if err != nil {
		tio.Shut()
		m.recordStartFailure(e, err)
		return fmt.Errorf("create task for container %s: %w", e.id, err)
	}
	created := time.Since(began)
	m.sealRootUsage(e)
	if err := task.Start(ctx); err != nil {
		cctx, cancel := m.cleanupCtx()
		defer cancel()
		if _, derr := task.Delete(cctx, containerd.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
			log.WithError(derr).Warn("delete task after failed start")
		}
		tio.Shut()
		m.recordStartFailure(e, err)
		return fmt.Errorf("start container %s: %w", e.id, err)
	}

	m.markRunning(e, task.Pid(), tio)
	m.exits.Go(func() { m.monitor(e, task, true) })
	log.WithFields(logrus.Fields{"pid": task.Pid(), "task_created_after": created, "task_started_after": time.Since(began)}).Info("container started")
	// The hook runs without the operation lock: a stop or removal must be
	// able to cut it short.
	unlock()
	return m.postStart(e)
}

func (m *Manager) recordStartFailure(e *entry, cause error) {
	m.markExited(e, exitCodeStartError, time.Now(), ReasonStartError, cause.Error())
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// monitor persists the start (when persistStart), then waits for the
// task to exit and records it.
func (m *Manager) monitor(e *entry, task containerd.Task, persistStart bool) {
	if persistStart {
		m.persistStatus(e)
	}
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id})
	ctx := m.nsCtx(context.Background())
	code, exitedAt := uint32(exitCodeUnknown), time.Time{}
	reason, message := ReasonUnknown, ""
	switch st, err := m.exits.Await(ctx, e.id, log); {
	case err == nil:
		code, exitedAt = st.ExitCode(), st.ExitTime()
		reason = m.exitReasonOf(e, code)
	case errdefs.IsNotFound(err):
		// Nobody but crishim deletes its tasks: containerd did, cleaning
		// up after a shim that died, and the exit status went with it.
		message = msgTaskLost
		log.Warn("task gone without an exit status; its shim died or containerd lost it")
	default:
		// The manager is closing: the container runs on, and the next
		// crishim finds it running.
		log.WithError(err).Debug("no longer watching the container")
		e.unwatch()
		return
	}
	m.finishExit(ctx, e, task, code, exitedAt, reason, message)
	log.WithFields(logrus.Fields{"exit": code, "reason": reason}).Info("container exited")
}

// finishExit deletes the exited task, closes the output once drained and
// records the exit (once: a container already recorded exited keeps its
// first exit).
func (m *Manager) finishExit(ctx context.Context, e *entry, task containerd.Task, code uint32, exitedAt time.Time, reason, message string) {
	e.mu.Lock()
	tio := e.io
	e.mu.Unlock()
	if tio != nil {
		tio.Drain(2 * time.Second)
	}
	if task != nil {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		// The task has exited: a plain delete does, without the wait and
		// kill of WithProcessKill (two round trips on every exit). Should
		// processes of it still run, containerd refuses and they are killed.
		_, err := task.Delete(dctx)
		if errdefs.IsFailedPrecondition(err) {
			_, err = task.Delete(dctx, containerd.WithProcessKill)
		}
		if err != nil && !errdefs.IsNotFound(err) {
			m.log().WithError(err).WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id}).Warn("delete exited task")
		}
		cancel()
	}
	if tio != nil {
		tio.Shut()
	}
	m.markExited(e, int32(code), exitedAt, reason, message)
}

// taskSignaler delivers stop signals to a container's current task.
type taskSignaler struct {
	m  *Manager
	id string
}

// Signal goes straight to the task service, as Task.Kill would, without
// loading the container and the task first: two round trips less on
// every stop.
func (s taskSignaler) Signal(ctx context.Context, sig syscall.Signal) error {
	ctx = s.m.nsCtx(ctx)
	_, err := s.m.client.TaskService().Kill(ctx, &tasks.KillRequest{ContainerID: s.id, Signal: uint32(sig)})
	return errdefs.FromGRPC(err)
}

// Stop stops a container with the given grace period in seconds; absent or
// already stopped is not an error.
func (m *Manager) Stop(ctx context.Context, id string, timeout int64) error {
	e, err := m.get(id)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	return m.stop(ctx, e, time.Duration(max(timeout, 0))*time.Second, false)
}

// stop stops e; haveOp says the caller holds e's operation lock, which an
// UNKNOWN container is settled under first (see settleUnknown).
func (m *Manager) stop(ctx context.Context, e *entry, grace time.Duration, haveOp bool) error {
	if e.State() == runtime.ContainerState_CONTAINER_UNKNOWN {
		if err := m.settle(ctx, e, haveOp); err != nil {
			return fmt.Errorf("stop container %s: %w", e.id, err)
		}
	}
	if e.State() != runtime.ContainerState_CONTAINER_RUNNING {
		return nil
	}
	sig, err := lifecycle.ParseSignal(e.rec.StopSignal)
	if err != nil {
		sig = syscall.SIGTERM
	}
	m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id, "signal": signalName(sig), "grace": grace}).Info("stopping container")
	if err := m.stopper.Stop(ctx, lifecycle.StopRequest{
		ID: e.id, Process: taskSignaler{m: m, id: e.id}, Exited: e.exited, Signal: sig, Grace: grace,
		PreStop: m.preStop(e), Gone: func() { m.taskGone(e) },
	}); err != nil {
		return fmt.Errorf("stop container %s: %w", e.id, err)
	}
	return nil
}

// taskGone is told by the stop loop that e's task is not there to signal.
// A watched container's exit monitor records the exit (it is on its way);
// an unwatched one would never exit, so its loss is recorded here.
func (m *Manager) taskGone(e *entry) {
	e.mu.Lock()
	watched := e.watched
	e.mu.Unlock()
	if watched {
		return
	}
	m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id}).Warn("stopping a container whose task is gone and that nothing watches")
	m.markExited(e, exitCodeUnknown, time.Time{}, ReasonUnknown, msgTaskLost)
}

// Remove deletes a container, stopping it first; absent is not an error.
func (m *Manager) Remove(ctx context.Context, id string) error {
	e, err := m.get(id)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	// Held to the end: no Start or update can come between the stop and
	// the removal.
	unlock, err := e.lockOp(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if m.lookup(e.id) != e {
		return nil // removed while this call waited for the lock
	}
	if err := m.stop(ctx, e, m.terminationGrace(e), true); err != nil {
		return err
	}
	m.markRemoving(e)

	cctx, cancel := m.cleanupCtx()
	defer cancel()
	if err := m.deleteContainer(cctx, e.id); err != nil {
		return fmt.Errorf("remove container %s: %w", e.id, err)
	}
	m.markRemoved(e)
	m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id}).Info("container removed")
	return nil
}

// deleteContainer removes the containerd container, any leftover task,
// the snapshot and crishim's files for it. The log file stays: the
// kubelet owns it.
func (m *Manager) deleteContainer(ctx context.Context, id string) error {
	// Usually the exit handler has deleted the task already. Then the
	// snapshot (keyed by the container ID) and the record go directly:
	// three round trips instead of six through containerd.Container. The
	// first is a delete rather than a lookup: the record must not go
	// while containerd still holds a task of it (see DeleteTask), since
	// nothing could delete that task afterwards.
	if lifecycle.DeleteTask(ctx, m.client, id) == nil {
		if err := m.client.SnapshotService(m.snapshotter()).Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		if err := m.client.ContainerService().Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		return m.removeFiles(id)
	}
	c, err := m.client.LoadContainer(ctx, id)
	if err == nil {
		if t, terr := c.Task(ctx, nil); terr == nil {
			if _, derr := t.Delete(ctx, containerd.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
				return derr
			}
		}
		if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	return m.removeFiles(id)
}

// removeFiles removes crishim's own files for container id.
func (m *Manager) removeFiles(id string) error {
	for _, dir := range []string{m.fifoDir(id), filepath.Join(m.cfg.Root, "containers", id)} {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// podEntries lists the containers of a pod.
func (m *Manager) podEntries(podID string) []*entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*entry
	for _, e := range m.containers {
		if e.rec.SandboxId == podID {
			out = append(out, e)
		}
	}
	return out
}

// StopPod stops all containers of pod podID in parallel, each with its own grace.
func (m *Manager) StopPod(ctx context.Context, podID string) error {
	entries := m.podEntries(podID)
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.stop(ctx, e, m.terminationGrace(e), false)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RemovePod removes all containers of pod podID.
func (m *Manager) RemovePod(ctx context.Context, podID string) error {
	var errs []error
	for _, e := range m.podEntries(podID) {
		if err := m.Remove(ctx, e.id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runningIO returns a running container with its IO; attaching to or
// reopening the log of anything else is a FailedPrecondition.
func (m *Manager) runningIO(id string) (*entry, *taskio.IO, error) {
	e, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	tio := e.io
	running := e.state == runtime.ContainerState_CONTAINER_RUNNING
	e.mu.Unlock()
	if !running || tio == nil {
		return nil, nil, fmt.Errorf("container %s is not running: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	return e, tio, nil
}

// ReopenLog reopens a running container's log file after the kubelet
// rotated it.
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	_, tio, err := m.runningIO(id)
	if err != nil {
		return err
	}
	return tio.ReopenLog()
}

// SubscribeOutput registers fn for the live output of a running
// container (stream is "stdout" or "stderr"); for attach.
func (m *Manager) SubscribeOutput(id string, fn func(stream string, p []byte)) (unsubscribe func(), err error) {
	e, err := m.get(id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.io == nil {
		return nil, fmt.Errorf("container %s is not running: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	return e.io.Subscribe(fn), nil
}
