package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/runtimeopts"
)

// runIntent is the journal entry of a Run in progress: enough to undo it
// without its containerd record, which may not exist yet. The network
// teardown (CNI DEL) needs the pod config for its port mappings.
type runIntent struct {
	ID        string
	NetNSPath string `json:",omitempty"`
	Config    []byte // proto-encoded PodSandboxConfig
}

func (m *Manager) writeIntent(in runIntent) error {
	return m.journal.Write(in.ID, in)
}

func (in *runIntent) setConfig(cfg *runtime.PodSandboxConfig) error {
	data, err := proto.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode config of sandbox %s: %w", in.ID, err)
	}
	in.Config = data
	return nil
}

// undoInterrupted tears down every sandbox whose Run a crash interrupted:
// its pause task and container, its snapshot, its network attachment
// (releasing the IP), its netns, shm mount and directories. A Run that did
// not finish never told its client the ID, so nobody can be using it: the
// kubelet retries and gets a fresh sandbox. An entry whose teardown fails
// stays for the next start.
func (m *Manager) undoInterrupted(ctx context.Context) {
	ids, err := m.journal.Entries()
	if err != nil {
		logrus.WithError(err).Warn("read the sandbox journal")
		return
	}
	for _, id := range ids {
		log := m.logger(id)
		if err := m.undoJournalled(ctx, id); err != nil {
			log.WithError(err).Error("could not undo an unfinished sandbox creation; retrying in the background")
			go m.retryUndo(id)
			continue
		}
		log.Warn("undid a sandbox creation interrupted by a crash")
	}
}

// undoJournalled undoes the Run journalled under id and then drops its
// journal entry.
func (m *Manager) undoJournalled(ctx context.Context, id string) error {
	log := m.logger(id)
	var in runIntent
	if err := m.journal.Read(id, &in); err != nil {
		log.WithError(err).Warn("unreadable journal entry; undoing what its ID names")
	}
	cfg := &runtime.PodSandboxConfig{}
	if err := proto.Unmarshal(in.Config, cfg); err != nil {
		log.WithError(err).Warn("journal entry without a usable pod config")
	}
	if err := m.undoRun(ctx, id, in.NetNSPath, cfg); err != nil {
		return err
	}
	if err := m.journal.Remove(id); err != nil {
		log.WithError(err).Warn("remove journal entry")
	}
	return nil
}

// retryUndo undoes a failed or interrupted Run whose undo failed, again
// and again with a growing pause, until it succeeds. A pod whose creation
// failed was never handed to a client, so nobody else will ever release
// what it still holds.
func (m *Manager) retryUndo(id string) {
	log := m.logger(id)
	for backoff := time.Second; ; backoff = min(2*backoff, maxUndoBackoff) {
		time.Sleep(backoff)
		ctx, cancel := m.cleanupContext()
		err := m.undoJournalled(ctx, id)
		cancel()
		if err == nil {
			log.Info("undid the rest of a failed sandbox creation")
			return
		}
		log.WithError(err).WithField("retry_in", min(2*backoff, maxUndoBackoff)).Warn("could not undo the rest of a failed sandbox creation")
	}
}

// maxUndoBackoff bounds the pause between retryUndo's attempts: long
// enough not to hammer a broken plugin, short enough to give an address
// back soon after the plugin works again.
const maxUndoBackoff = 30 * time.Second

func (m *Manager) undoRun(ctx context.Context, id, netnsPath string, cfg *runtime.PodSandboxConfig) error {
	var errs []error
	c, err := m.client.LoadContainer(ctx, id)
	switch {
	case err == nil:
		if err := killPause(ctx, m.client, c); err != nil {
			errs = append(errs, fmt.Errorf("delete pause task: %w", err))
		} else if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete pause container: %w", err))
		}
	case errdefs.IsNotFound(err):
		// The crash may have come between the snapshot and the container.
		if err := m.client.SnapshotService(m.snapshotter()).Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove snapshot: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("load pause container: %w", err))
	}
	if netnsPath != "" && m.net != nil {
		if err := m.net.Teardown(ctx, id, netnsPath, cfg); err != nil {
			errs = append(errs, err)
		} else if err := m.net.RemoveNetNS(netnsPath); err != nil {
			errs = append(errs, err)
		}
	}
	if !hostIPC(cfg) {
		if err := unmountShm(m.shmPathFor(id, cfg)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		for _, dir := range []string{m.podDir(id), m.stateDir(id)} {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) snapshotter() string { return runtimeopts.Snapshotter(m.cfg.Snapshotter) }

// finishInterruptedStops completes the stop of recovered pods whose pause
// is gone but whose network is still attached: a StopPodSandbox that
// crashed between killing the pause and the CNI DEL, or a pause that died
// while crishim was down. Either way the pod can never be ready again, and
// its IP address must go back to the pool now, not whenever the kubelet
// gets round to it.
func (m *Manager) finishInterruptedStops(ctx context.Context) {
	for _, p := range m.store.all() {
		// An Unknown pod's pause may well run: its re-check decides.
		if p.getState() != stateNotReady {
			continue
		}
		m.finishStop(ctx, p)
	}
}

// finishStop completes the stop of a pod whose pause is gone.
func (m *Manager) finishStop(ctx context.Context, p *pod) {
	p.op.Lock()
	err := m.stopLocked(ctx, p)
	p.op.Unlock()
	if err != nil {
		m.logger(p.id).WithError(err).Warn("finish the stop of a pod whose pause is gone")
		return
	}
	m.logger(p.id).Info("finished the stop of a pod whose pause is gone")
}

// removeOrphanNetNS deletes network namespaces in crishim's netns
// directory that no pod owns: left by a crash between creating one and
// journalling it. A pod in the store owns its namespace whatever its
// state: only its Stop may remove it, after CNI DEL, or the address, veth
// and port mappings CNI gave it could never be released.
func (m *Manager) removeOrphanNetNS() {
	if m.net == nil || m.net.NetNSDir() == "" {
		return
	}
	dir := m.net.NetNSDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	owned := map[string]bool{}
	for _, p := range m.store.all() {
		p.mu.Lock()
		noRecord := p.noRecord
		p.mu.Unlock()
		if noRecord {
			// Which namespace it owns is not known: any may be its.
			m.logger(p.id).Warn("keep every network namespace: a pod's record is unreadable")
			return
		}
		owned[p.netnsPath] = true
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if owned[path] {
			continue
		}
		if err := m.net.RemoveNetNS(path); err != nil {
			logrus.WithError(err).WithField("netns", path).Warn("remove orphan network namespace")
			continue
		}
		logrus.WithField("netns", path).Warn("removed orphan network namespace")
	}
}
