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
	// The metadata reaches CNI plugins as CNI_ARGS (K8S_POD_NAME=...;...),
	// an environment variable: a NUL, a control character, ';' or '='
	// would fail the exec or corrupt the list.
	for field, v := range map[string]string{"name": md.GetName(), "namespace": md.GetNamespace(), "uid": md.GetUid()} {
		if i := strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f || r == ';' || r == '=' }); i >= 0 {
			return fmt.Errorf("pod sandbox metadata %s %q has the character %q: %w", field, v, v[i:i+1], errdefs.ErrInvalidArgument)
		}
	}
	for _, pm := range cfg.GetPortMappings() {
		if pm.GetHostPort() < 0 || pm.GetHostPort() > 65535 || pm.GetContainerPort() < 0 || pm.GetContainerPort() > 65535 {
			return fmt.Errorf("port mapping %d->%d out of range: %w", pm.GetHostPort(), pm.GetContainerPort(), errdefs.ErrInvalidArgument)
		}
	}
	for k := range cfg.GetLinux().GetSysctls() {
		if err := validateSysctl(cfg, k); err != nil {
			return err
		}
	}
	return nil
}

// ipcSysctls are the kernel.* sysctls the IPC namespace holds.
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// validateSysctl admits only sysctls of a namespace the pod has of its
// own: anything else would change the host, and runc refuses it only when
// the pause container starts, as an unexplained runtime failure.
func validateSysctl(cfg *runtime.PodSandboxConfig, key string) error {
	k := strings.ReplaceAll(key, "/", ".")
	switch {
	case strings.HasPrefix(k, "net.") && len(k) > len("net."):
		if hostNetwork(cfg) {
			return fmt.Errorf("sysctl %s needs a pod network namespace, the pod uses the host's: %w", key, errdefs.ErrInvalidArgument)
		}
	case ipcSysctls[k] || strings.HasPrefix(k, "fs.mqueue.") && len(k) > len("fs.mqueue."):
		if hostIPC(cfg) {
			return fmt.Errorf("sysctl %s needs a pod IPC namespace, the pod uses the host's: %w", key, errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("sysctl %q is not namespaced (only net.*, fs.mqueue.* and the IPC kernel.* ones are): %w", key, errdefs.ErrInvalidArgument)
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
	if f.GetId() != "" && s.GetId() != f.GetId() {
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

// Validate runs the checks RunPodSandbox makes on cfg before it calls
// containerd or CNI; exported so the validation layer can be fuzzed alone.
func Validate(cfg *runtime.PodSandboxConfig) error { return validate(cfg) }
