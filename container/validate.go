package container

import (
	"fmt"

	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// validateConfig holds the checks of a container config that need neither
// containerd nor the pod, so a bad request fails before anything is made.
func validateConfig(cfg *runtime.ContainerConfig) error {
	if cfg == nil {
		return fmt.Errorf("container config is required: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetMetadata().GetName() == "" {
		return fmt.Errorf("container config needs metadata.name: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetImage().GetImage() == "" {
		return fmt.Errorf("container config needs an image: %w", errdefs.ErrInvalidArgument)
	}
	if err := validateHooks(cfg); err != nil {
		return fmt.Errorf("container %s: %w", cfg.GetMetadata().GetName(), err)
	}
	return nil
}

// ValidateConfig runs every check CreateContainer makes on cfg before it
// calls containerd, with pod as the pod's config, and returns the host path
// the container's log would go to ("" when it keeps no log). It exists so
// that the validation layer can be tested and fuzzed on its own.
func ValidateConfig(cfg *runtime.ContainerConfig, pod *runtime.PodSandboxConfig) (string, error) {
	if err := validateConfig(cfg); err != nil {
		return "", err
	}
	return resolveLogPath(pod.GetLogDirectory(), cfg.GetLogPath())
}
