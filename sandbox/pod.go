package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// validate rejects a pod config crishim cannot identify or run.
func validate(cfg *runtime.PodSandboxConfig) error {
	if cfg == nil {
		return fmt.Errorf("pod sandbox config is required: %w", errdefs.ErrInvalidArgument)
	}
	md := cfg.GetMetadata()
	if md == nil {
		return fmt.Errorf("pod sandbox metadata is required: %w", errdefs.ErrInvalidArgument)
	}
	var missing []string
	if md.GetName() == "" {
		missing = append(missing, "name")
	}
	if md.GetNamespace() == "" {
		missing = append(missing, "namespace")
	}
	if md.GetUid() == "" {
		missing = append(missing, "uid")
	}
	if len(missing) > 0 {
		return fmt.Errorf("pod sandbox metadata lacks %s: %w", strings.Join(missing, ", "), errdefs.ErrInvalidArgument)
	}
	for _, pm := range cfg.GetPortMappings() {
		if pm.GetHostPort() < 0 || pm.GetHostPort() > 65535 || pm.GetContainerPort() < 0 || pm.GetContainerPort() > 65535 {
			return fmt.Errorf("port mapping %d->%d out of range: %w", pm.GetHostPort(), pm.GetContainerPort(), errdefs.ErrInvalidArgument)
		}
	}
	if hostNetwork(cfg) && len(cfg.GetLinux().GetSysctls()) > 0 {
		for k := range cfg.GetLinux().GetSysctls() {
			if strings.HasPrefix(k, "net.") {
				return fmt.Errorf("sysctl %s needs a pod network namespace, the pod uses the host's: %w", k, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

// nameKey is the pod's identity for duplicate detection: the kubelet makes
// a new attempt rather than reuse a key.
func nameKey(md *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", md.GetName(), md.GetNamespace(), md.GetUid(), md.GetAttempt())
}

// newID returns a random 64 hex character sandbox ID.
func newID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate sandbox id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func namespaceOptions(cfg *runtime.PodSandboxConfig) *runtime.NamespaceOption {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
}

func hostNetwork(cfg *runtime.PodSandboxConfig) bool {
	return namespaceOptions(cfg).GetNetwork() == runtime.NamespaceMode_NODE
}

func hostIPC(cfg *runtime.PodSandboxConfig) bool {
	return namespaceOptions(cfg).GetIpc() == runtime.NamespaceMode_NODE
}

func hostPID(cfg *runtime.PodSandboxConfig) bool {
	return namespaceOptions(cfg).GetPid() == runtime.NamespaceMode_NODE
}

// matches applies a ListPodSandbox filter to one sandbox.
func matches(f *runtime.PodSandboxFilter, s *runtime.PodSandbox) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(s.GetId(), f.GetId()) {
		return false
	}
	if st := f.GetState(); st != nil && st.GetState() != s.GetState() {
		return false
	}
	for k, v := range f.GetLabelSelector() {
		if got, ok := s.GetLabels()[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// cgroupsPath places the pause container under the pod's cgroup parent in
// the syntax of the cgroup driver runc is told to use.
func cgroupsPath(driver, parent, id string) string {
	if driver == "systemd" {
		slice := parent
		if slice == "" {
			slice = "system.slice"
		}
		// runc's systemd driver takes "slice:prefix:name".
		return slice + ":crishim:" + id
	}
	if parent == "" {
		parent = "/crishim"
	}
	return strings.TrimSuffix(parent, "/") + "/" + id
}
