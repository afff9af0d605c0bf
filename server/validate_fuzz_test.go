package server

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/containerd/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/container"
	"github.com/crishim/crishim/internal/idprefix"
	"github.com/crishim/crishim/lifecycle"
	"github.com/crishim/crishim/sandbox"
)

// wantInvalid fails unless err is nil or an InvalidArgument both as an
// errdefs error and once the server has mapped it to a gRPC status.
func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if _, isStatus := status.FromError(err); !isStatus && !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("%s: %v does not wrap ErrInvalidArgument", what, err)
	}
	if code := status.Code(toStatus(err)); code != codes.InvalidArgument {
		t.Fatalf("%s: code %v for %v, want InvalidArgument", what, code, err)
	}
}

// noPanic turns a panic in fn into a failure that names the step.
func noPanic(t *testing.T, what string, fn func() error) error {
	t.Helper()
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("%s panicked: %v", what, p)
			}
		}()
		err = fn()
	}()
	return err
}

// FuzzValidate fuzzes the validation crishim runs before any containerd
// call: the server's request checks, pod and container config validation,
// log path resolution and ID (prefix) resolution. It has no external state,
// so `go test -fuzz=FuzzValidate` runs it at full speed anywhere; the
// real-stack FuzzCRIRequests covers what happens after validation.
func FuzzValidate(f *testing.F) {
	f.Add("pod", "ns", "uid", uint32(0), "/var/log/pods/ns_pod_uid", "ctr/0.log", "ctr", "busybox", "", "abc", "abcdef,abd012,fff", int32(0), int32(0), "", "net.core.somaxconn", "1024", int32(80), int32(8080), int64(10), uint8(0))
	f.Add("", "", "", uint32(1), "/logs", "../escape.log", "c", "img", "", "", "", int32(2), int32(3), "", "", "", int32(-1), int32(70000), int64(-1), uint8(255))
	f.Add("p", "n", "u", uint32(7), "/logs", "/etc/passwd", "c", "img", "", "a", "a,ab,abc", int32(2), int32(3), "x", "net.ipv4.ip_forward", "1", int32(0), int32(0), int64(0), uint8(3))
	f.Add("p", "n", "u", uint32(0), "/logs/", "a/../../b.log", "c", "img", `{"postStart": 1`, "ff", "ff", int32(1), int32(4), "ff", "kernel.shm_rmid_forced", "1", int32(65535), int32(1), int64(1), uint8(16))
	f.Add("p", "n", "u", uint32(0), "relative/dir", "..", "c", "img", "", strings.Repeat("f", 64), strings.Repeat("f", 64), int32(0), int32(0), "", "", "", int32(1), int32(1), int64(0), uint8(8))

	f.Fuzz(func(t *testing.T, podName, podNS, podUID string, attempt uint32, logDir, logPath, ctrName, image, hook, id, keys string,
		nsNet, nsPID int32, targetID, sysctlKey, sysctlVal string, hostPort, ctrPort int32, timeout int64, flags uint8) {
		// gRPC refuses non-UTF-8 strings before a handler runs.
		for _, s := range []string{podName, podNS, podUID, logDir, logPath, ctrName, image, hook, id, keys, targetID, sysctlKey, sysctlVal} {
			if !utf8.ValidString(s) {
				t.Skip("not UTF-8")
			}
		}
		nsOpts := &runtime.NamespaceOption{Network: runtime.NamespaceMode(nsNet), Pid: runtime.NamespaceMode(nsPID), TargetId: targetID}
		pod := &runtime.PodSandboxConfig{
			Metadata:     &runtime.PodSandboxMetadata{Name: podName, Namespace: podNS, Uid: podUID, Attempt: attempt},
			LogDirectory: logDir,
			PortMappings: []*runtime.PortMapping{{HostPort: hostPort, ContainerPort: ctrPort}},
			Linux: &runtime.LinuxPodSandboxConfig{
				Sysctls:         map[string]string{sysctlKey: sysctlVal},
				SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: nsOpts},
			},
		}
		ctr := &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: ctrName, Attempt: attempt},
			Image:    &runtime.ImageSpec{Image: image},
			LogPath:  logPath,
			Linux:    &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{NamespaceOptions: nsOpts}},
		}
		if hook != "" {
			ctr.Annotations = map[string]string{lifecycle.AnnotationPostStart: hook, lifecycle.AnnotationPreStop: sysctlVal}
		}
		// Absent messages, as a client may send them.
		if flags&1 != 0 {
			pod.Metadata = nil
		}
		if flags&2 != 0 {
			ctr.Metadata = nil
		}
		if flags&4 != 0 {
			ctr.Image = nil
		}
		if flags&8 != 0 {
			pod.Linux = nil
		}
		if flags&16 != 0 {
			ctr.Linux = nil
		}
		if flags&32 != 0 {
			pod = nil
		}
		if flags&64 != 0 {
			ctr = nil
		}

		err := noPanic(t, "sandbox.Validate", func() error { return sandbox.Validate(pod) })
		wantInvalid(t, "sandbox.Validate", err)
		if pod == nil || pod.GetMetadata().GetName() == "" || pod.GetMetadata().GetNamespace() == "" || pod.GetMetadata().GetUid() == "" {
			if err == nil {
				t.Fatalf("sandbox.Validate accepted a pod without full metadata: %v", pod.GetMetadata())
			}
		}
		if k := strings.ReplaceAll(sysctlKey, "/", "."); err == nil && pod.GetLinux() != nil &&
			!strings.HasPrefix(k, "net.") && !strings.HasPrefix(k, "fs.mqueue.") && !strings.HasPrefix(k, "kernel.") {
			t.Fatalf("sandbox.Validate accepted the host-wide sysctl %q", sysctlKey)
		}
		if (hostPort < 0 || hostPort > 65535 || ctrPort < 0 || ctrPort > 65535) && pod != nil && err == nil {
			t.Fatalf("sandbox.Validate accepted port mapping %d->%d", hostPort, ctrPort)
		}

		var resolved string
		err = noPanic(t, "container.ValidateConfig", func() error {
			var err error
			resolved, err = container.ValidateConfig(ctr, pod)
			return err
		})
		wantInvalid(t, "container.ValidateConfig", err)
		if err == nil {
			if ctr.GetMetadata().GetName() == "" || ctr.GetImage().GetImage() == "" {
				t.Fatalf("container.ValidateConfig accepted a config without name or image: %v", ctr)
			}
			dir := pod.GetLogDirectory()
			switch {
			case dir == "" || logPath == "":
				if resolved != "" {
					t.Fatalf("log path %q resolved to %q with no directory or path", logPath, resolved)
				}
			case filepath.IsAbs(logPath):
				t.Fatalf("absolute log path %q accepted", logPath)
			default:
				rel, rerr := filepath.Rel(filepath.Clean(dir), resolved)
				if rerr != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
					t.Fatalf("log path %q in %q resolved to %q, outside the directory", logPath, dir, resolved)
				}
			}
		}

		// ID resolution over a set of fuzzed IDs.
		objects := map[string]string{}
		for _, k := range strings.Split(keys, ",") {
			if k != "" {
				objects[k] = k
			}
		}
		var got string
		err = noPanic(t, "idprefix.Resolve", func() error {
			var err error
			got, err = idprefix.Resolve(objects, id, "container")
			return err
		})
		matches := 0
		for k := range objects {
			if strings.HasPrefix(k, id) {
				matches++
			}
		}
		_, exact := objects[id]
		switch {
		case id == "" || (!exact && matches > 1):
			if status.Code(toStatus(err)) != codes.InvalidArgument {
				t.Fatalf("Resolve(%q) in %v: %v, want InvalidArgument", id, keys, err)
			}
		case exact:
			if err != nil || got != id {
				t.Fatalf("Resolve(%q) of a full ID: %q, %v", id, got, err)
			}
		case matches == 0:
			if status.Code(toStatus(err)) != codes.NotFound {
				t.Fatalf("Resolve(%q) in %v: %v, want NotFound", id, keys, err)
			}
		default:
			if err != nil || !strings.HasPrefix(got, id) {
				t.Fatalf("Resolve(%q) of a unique prefix: %q, %v", id, got, err)
			}
		}

		// The server's own request checks: requests they must refuse are
		// sent to a server with no backends, so reaching past the check
		// would panic.
		s := &Server{}
		ctx := context.Background()
		var cfg *runtime.ContainerConfig
		if flags&128 == 0 {
			cfg = ctr
		}
		serverChecks := []struct {
			what   string
			refuse bool
			call   func() error
		}{
			{"RunPodSandbox", pod == nil, func() error {
				_, err := s.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
				return err
			}},
			{"CreateContainer", id == "" || cfg == nil, func() error {
				_, err := s.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: id, Config: cfg, SandboxConfig: pod})
				return err
			}},
			{"StartContainer", id == "", func() error {
				_, err := s.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id})
				return err
			}},
			{"StopContainer", id == "" || timeout < 0, func() error {
				_, err := s.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: timeout})
				return err
			}},
			{"RemoveContainer", id == "", func() error {
				_, err := s.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id})
				return err
			}},
			{"ContainerStatus", id == "", func() error {
				_, err := s.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
				return err
			}},
			{"ExecSync", id == "" || flags&4 != 0, func() error {
				var cmd []string
				if flags&4 == 0 {
					cmd = []string{image}
				}
				_, err := s.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd})
				return err
			}},
			{"StopPodSandbox", id == "", func() error {
				_, err := s.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id})
				return err
			}},
			{"RemovePodSandbox", id == "", func() error {
				_, err := s.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id})
				return err
			}},
			{"PodSandboxStatus", id == "", func() error {
				_, err := s.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: id})
				return err
			}},
		}
		for _, c := range serverChecks {
			if !c.refuse {
				continue
			}
			err := noPanic(t, c.what, c.call)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%s: %v, want InvalidArgument", c.what, err)
			}
		}
	})
}
