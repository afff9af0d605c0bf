package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/faultpoint"
	crishimpb "github.com/crishim/crishim/proto"
)

// The steps of a pod's recovery, each a fault point so that the tests can
// make it fail.
const (
	fpRecoverInfo       = "sandbox.recover.info"
	fpRecoverDecode     = "sandbox.recover.decode"
	fpRecoverTask       = "sandbox.recover.task"
	fpRecoverTaskStatus = "sandbox.recover.taskStatus"
	fpRecoverNetNS      = "sandbox.recover.netns"
)

// Recover rebuilds the in-memory state from containerd after a restart.
// Every pod containerd holds is kept: one whose recovery fails is Unknown
// (listed NOTREADY with the reason), keeps its network namespace and all
// else it owns, and is re-checked until its recovery completes; Stop and
// Remove clean it up meanwhile. Dropping it instead would leave its pause
// running and its address, veth and port mappings taken for good, as
// nothing could run its CNI DEL any more.
func (m *Manager) Recover(ctx context.Context) error {
	ctx = m.withNS(ctx)
	// What a crash left half made goes first, so it is not recovered as a pod.
	m.undoInterrupted(ctx)
	list, err := m.client.Containers(ctx, fmt.Sprintf("labels.%q==%s", LabelKind, KindSandbox))
	if err != nil {
		return fmt.Errorf("list sandboxes in containerd: %w", err)
	}
	for _, c := range list {
		p, err := m.recoverOne(ctx, c.ID())
		m.registerName(p)
		if err != nil {
			m.unknown(p, err)
			go m.recheck(p)
			continue
		}
		m.store.add(p)
		if p.state == stateReady {
			m.exits.Go(func() { m.watch(p) })
		}
		m.logger(p.id).WithField("state", p.state).Info("recovered pod sandbox")
	}
	m.finishInterruptedStops(ctx)
	m.removeOrphanNetNS()
	return nil
}

// registerName reserves a recovered pod's name, so that a retried Run
// of the same pod finds it.
func (m *Manager) registerName(p *pod) {
	if other, ok := m.names.Add(p.name, p.id); !ok {
		m.logger(p.id).WithField("other", other).Warn("two sandboxes recorded with the same name")
	}
}

// recoverOne reads pod id's record and its pause task's state from
// containerd. On error the pod it returns is what could be learnt - from
// the copy of the record in the pod's directory when containerd's could
// not be read - for the store to keep as Unknown.
func (m *Manager) recoverOne(ctx context.Context, id string) (*pod, error) {
	rec, cfg, roRoot, err := m.readStoredRecord(ctx, id)
	if err != nil {
		if crec, ccfg, cerr := readRecordCopy(m.recordCopyPath(id)); cerr == nil && crec.GetId() == id {
			return m.podFromRecord(id, crec, ccfg), err
		}
		return m.placeholder(id), err
	}
	p := m.podFromRecord(id, rec, cfg)

	if err := faultpoint.Hit(fpRecoverTask); err != nil {
		return p, fmt.Errorf("load pause task: %w", err)
	}
	// One Get answers both whether the task exists and how it is.
	resp, err := m.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	err = errdefs.FromGRPC(err)
	switch {
	case errdefs.IsNotFound(err):
		// Created but never started, or its exit was already handled.
	case err != nil:
		return p, fmt.Errorf("load pause task: %w", err)
	default:
		if err := faultpoint.Hit(fpRecoverTaskStatus); err != nil {
			return p, fmt.Errorf("pause task status: %w", err)
		}
		proc := resp.GetProcess()
		p.pid = proc.GetPid()
		if roRoot {
			m.sealRootUsage(id)
		}
		if proc.GetStatus() == tasktypes.Status_RUNNING && p.state != stateStopped {
			p.state = stateReady
		}
	}

	// A running pause's namespace must be there for its containers and
	// its CNI DEL; a stopped pod's is gone, an exited pause's stop
	// completes without it.
	if p.netnsPath != "" && p.state == stateReady {
		if err := faultpoint.Hit(fpRecoverNetNS); err != nil {
			return p, fmt.Errorf("check network namespace %s: %w", p.netnsPath, err)
		}
		if _, err := os.Lstat(p.netnsPath); err != nil {
			return p, fmt.Errorf("check network namespace: %w", err)
		}
	}
	return p, nil
}

// readStoredRecord reads and decodes pod id's record from containerd, and
// tells whether its pause's spec has a read-only root (pods made before
// every pause root was read-only have a writable one).
func (m *Manager) readStoredRecord(ctx context.Context, id string) (*crishimpb.SandboxRecord, *runtime.PodSandboxConfig, bool, error) {
	if err := faultpoint.Hit(fpRecoverInfo); err != nil {
		return nil, nil, false, fmt.Errorf("read sandbox record: %w", err)
	}
	info, err := m.client.ContainerService().Get(ctx, id)
	if err != nil {
		return nil, nil, false, fmt.Errorf("read sandbox record: %w", err)
	}
	if err := faultpoint.Hit(fpRecoverDecode); err != nil {
		return nil, nil, false, fmt.Errorf("decode sandbox record: %w", err)
	}
	rec, cfg, err := readRecord(info)
	if err != nil {
		return nil, nil, false, err
	}
	if rec.GetId() != id {
		return nil, nil, false, fmt.Errorf("record of sandbox %s names sandbox %q", id, rec.GetId())
	}
	return rec, cfg, specRootReadonly(info.Spec), nil
}

// specRootReadonly tells whether a containerd container's OCI spec mounts
// its root read-only; only that field is decoded.
func specRootReadonly(spec typeurl.Any) bool {
	if spec == nil {
		return false
	}
	var s struct {
		Root *struct {
			Readonly bool `json:"readonly"`
		} `json:"root"`
	}
	return json.Unmarshal(spec.GetValue(), &s) == nil && s.Root != nil && s.Root.Readonly
}

// podFromRecord is the pod a record describes, NotReady until its pause
// task is found running.
func (m *Manager) podFromRecord(id string, rec *crishimpb.SandboxRecord, cfg *runtime.PodSandboxConfig) *pod {
	p := &pod{
		id:        id,
		name:      rec.GetName(),
		cfg:       cfg,
		handler:   rec.GetRuntimeHandler(),
		netnsPath: rec.GetNetnsPath(),
		dir:       m.podDir(id),
		stateDir:  m.stateDir(id),
		shmPath:   m.shmPathFor(id, cfg),
		image:     rec.GetSandboxImage(),
		createdAt: time.Unix(0, rec.GetCreatedAt()),
		ip:        rec.GetIp(),
		extraIPs:  rec.GetAdditionalIps(),
		state:     stateNotReady,
	}
	if rec.GetStopped() {
		p.state = stateStopped
	}
	if p.name == "" {
		p.name = nameKey(cfg.GetMetadata())
	}
	return p
}

// placeholder stands for a pod none of whose records could be read: its
// ID is all that is known. Its metadata names it by ID, so that the
// kubelet, which knows no such pod, stops and removes it.
func (m *Manager) placeholder(id string) *pod {
	cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: id, Uid: id}}
	return &pod{
		id:       id,
		name:     nameKey(cfg.GetMetadata()),
		cfg:      cfg,
		dir:      m.podDir(id),
		stateDir: m.stateDir(id),
		shmPath:  m.shmPathFor(id, cfg),
		state:    stateUnknown,
		noRecord: true,
	}
}

// recheck retries the recovery of Unknown pod p, with a growing pause,
// until it completes or a Stop or Remove settled the pod.
func (m *Manager) recheck(p *pod) {
	for backoff := time.Second; ; backoff = min(2*backoff, maxUndoBackoff) {
		time.Sleep(backoff)
		if m.recheckOnce(p) {
			return
		}
	}
}

// recheckOnce tries to complete p's recovery once and reports whether
// there is nothing left to retry.
func (m *Manager) recheckOnce(p *pod) bool {
	p.op.Lock()
	defer p.op.Unlock()
	if p.getState() != stateUnknown {
		return true // stopped or removed meanwhile
	}
	ctx, cancel := m.cleanupContext()
	defer cancel()
	found, err := m.recoverOne(ctx, p.id)
	log := m.logger(p.id)
	if err != nil {
		m.stillUnknown(p, err)
		log.WithError(err).Warn("pod sandbox still not recovered")
		return false
	}
	if found.name != p.name {
		m.names.Release(p.name, p.id)
		m.registerName(found)
	}
	if !m.recovered(p, found) {
		return true
	}
	log.WithField("state", found.state).Info("completed the recovery of a pod sandbox")
	switch found.state {
	case stateReady:
		m.exits.Go(func() { m.watch(found) })
	case stateNotReady:
		m.finishStop(ctx, found)
	}
	return true
}
