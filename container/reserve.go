package container

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// createTimeout bounds one CreateContainer's work once it runs detached
// from its client (image unpack included).
const createTimeout = 4 * time.Minute

// Create makes a container in pod podID and returns its ID.
//
// Names follow the rule of package names: the work runs detached from
// ctx, so a kubelet that times out and retries the same container (same
// name and attempt in the same pod) gets the container its first request
// made - waiting for it if needed - instead of "name is reserved" or a
// twin. A concurrent Create of a name whose first client is still
// waiting, or any Create of a name already delivered, gets AlreadyExists.
func (m *Manager) Create(ctx context.Context, podID string, cfg *runtime.ContainerConfig, pod *runtime.PodSandboxConfig) (string, error) {
	if cfg.GetMetadata().GetName() == "" {
		return "", fmt.Errorf("container config needs metadata.name: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := m.sandboxes.Get(podID)
	if err != nil {
		return "", fmt.Errorf("pod sandbox %s: %w", podID, err)
	}
	podMeta := pod.GetMetadata()
	if sb.Config != nil {
		podMeta = sb.Config.GetMetadata()
	}
	key := nameKey(cfg.GetMetadata(), podMeta)
	id := newID()
	return m.names.Create(m.nsCtx(ctx), key, id, func(ctx context.Context) error {
		_, err := m.create(ctx, id, podID, cfg, pod)
		return err
	})
}

// createIntent is the journal entry of a Create in progress.
type createIntent struct {
	ID string
}

// undoInterrupted deletes every container whose Create a crash
// interrupted - its containerd record, snapshot and files - since its
// client never got the ID. An entry whose cleanup fails stays for the
// next start.
func (m *Manager) undoInterrupted(ctx context.Context) {
	ids, err := m.journal.Entries()
	if err != nil {
		m.log().WithError(err).Warn("read the container journal")
		return
	}
	for _, id := range ids {
		log := m.log().WithField("container", id)
		err := m.deleteContainer(ctx, id)
		if err == nil {
			// The crash may have come between the snapshot and the container.
			err = m.client.SnapshotService(m.snapshotter()).Remove(ctx, id)
			if errdefs.IsNotFound(err) {
				err = nil
			}
		}
		if err != nil {
			log.WithError(err).Error("could not undo a container creation interrupted by a crash; will retry at next start")
			continue
		}
		if err := m.journal.Remove(id); err != nil {
			log.WithError(err).Warn("remove journal entry")
		}
		log.Warn("undid a container creation interrupted by a crash")
	}
}
