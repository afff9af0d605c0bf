package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// createTimeout bounds one RunPodSandbox's work once it runs detached from
// its client; the kubelet's own RunPodSandbox timeout is 4 minutes.
const createTimeout = 4 * time.Minute

// Run creates and starts a pod sandbox and returns its ID.
//
// Names follow the rule of package names: the work runs detached from
// ctx, so a kubelet that times out and retries the same pod (same name,
// namespace, uid and attempt) gets the sandbox its first request made -
// waiting for it if it is still being made - instead of the classic "name
// is reserved" error or a second sandbox. A concurrent Run of a name whose
// first client is still waiting, or any Run of a name already delivered,
// gets AlreadyExists naming the sandbox.
func (m *Manager) Run(ctx context.Context, cfg *runtime.PodSandboxConfig, handler string) (string, error) {
	if err := validate(cfg); err != nil {
		return "", err
	}
	if err := m.checkHandler(handler); err != nil {
		return "", err
	}
	if m.net == nil && !hostNetwork(cfg) {
		return "", fmt.Errorf("no network manager for a pod network: %w", errdefs.ErrFailedPrecondition)
	}
	if m.images == nil {
		return "", fmt.Errorf("no image service to provide the sandbox image: %w", errdefs.ErrFailedPrecondition)
	}
	id, err := newID()
	if err != nil {
		return "", err
	}
	// The caller keeps its config; ours must not change under us.
	cfg = proto.Clone(cfg).(*runtime.PodSandboxConfig)
	key := nameKey(cfg.GetMetadata())
	return m.names.Create(m.withNS(ctx), key, id, func(ctx context.Context) error {
		return m.run(ctx, id, key, cfg, handler)
	})
}
