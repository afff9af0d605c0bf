//go:build linux

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
	"github.com/crishim/crishim/internal/config"
)

// The fuzz target drives the real handlers in-process, on a private
// containerd, with one host-network pod to create containers in. Pod
// networks use a loopback-only CNI config: a fuzzed RunPodSandbox goes
// through netns, snapshot and pause container creation and then fails at
// CNI, exercising every undo without touching the host's network.
var fuzzStack struct {
	once  sync.Once
	err   error
	s     *Server
	ctrd  *testenv.Containerd
	dir   string
	podID string
	pod   *runtime.PodSandboxConfig
	image string
}

func setupFuzzStack() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		return fmt.Errorf("needs containerd: %v", err)
	}
	sweepFuzzStacks()
	dir, err := os.MkdirTemp("/var/tmp", fuzzDirPrefix)
	if err != nil {
		return err
	}
	fuzzStack.dir = dir
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	// containerd gets SIGKILL when the thread that started it exits (the
	// harness sets a parent death signal), and fuzz workers do end
	// threads: start it from a thread that lives as long as the process.
	type started struct {
		c   *testenv.Containerd
		err error
	}
	ch := make(chan started)
	go func() {
		goruntime.LockOSThread()
		c, err := testenv.StartContainerd(filepath.Join(dir, "containerd"), filepath.Join(dir, "containerd.log"))
		ch <- started{c, err}
		select {}
	}()
	st := <-ch
	ctrd, err := st.c, st.err
	if err != nil {
		return err
	}
	fuzzStack.ctrd = ctrd
	cniDir := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		return err
	}
	conf := `{"cniVersion": "1.0.0", "name": "fuzz-lo", "plugins": [{"type": "loopback"}]}`
	if err := os.WriteFile(filepath.Join(cniDir, "10-fuzz.conflist"), []byte(conf), 0o644); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.ContainerdAddress = ctrd.Address
	cfg.ContainerdNamespace = fuzzNamespace(os.Getpid())
	cfg.Root = filepath.Join(dir, "root")
	cfg.State = filepath.Join(dir, "state")
	cfg.CNIConfDir = cniDir
	cfg.CNIBinDir = testenv.CNIBinDir
	cfg.RegistryConfigDir = filepath.Join(dir, "certs.d")
	cfg.Listen = "unix://" + filepath.Join(dir, "crishim.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	fuzzStack.s = s
	local, err := s.images.EnsureSandboxImage(ctx, "")
	if err != nil {
		return err
	}
	fuzzStack.image = local.Image.Name()
	fuzzStack.pod = &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "fuzz-host", Namespace: "fuzz", Uid: "fuzz-host-uid"},
		LogDirectory: filepath.Join(dir, "logs"),
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}},
	}
	resp, err := s.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: fuzzStack.pod})
	if err != nil {
		return fmt.Errorf("run the host-network pod: %w", err)
	}
	fuzzStack.podID = resp.PodSandboxId
	return nil
}

func teardownFuzzStack() {
	if s := fuzzStack.s; s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if fuzzStack.podID != "" {
			_, _ = s.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: fuzzStack.podID})
			_, _ = s.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: fuzzStack.podID})
		}
		s.Close()
	}
	if fuzzStack.ctrd != nil {
		_ = fuzzStack.ctrd.Stop()
	}
	if fuzzStack.dir != "" {
		if os.Getenv("KEEPFUZZ") == "" {
			os.RemoveAll(fuzzStack.dir)
		}
	}
}

const fuzzDirPrefix = "crishim-fuzz-"

// fuzzNamespace is the containerd namespace of the fuzz stack process pid made.
func fuzzNamespace(pid int) string { return fmt.Sprintf("crishim-fuzz-%d", pid) }

// sweepFuzzStacks removes the stacks of fuzz workers that died without
// their teardown: `go test -fuzz` kills workers that do not stop in time,
// and a killed worker's containerd dies with it (parent death signal)
// while its shims, pause processes and mounts stay. Each stack's owner
// file names the process that made it; a stack whose owner is gone is
// taken apart: its containers and shims killed, its mounts
// detached, and the directory removed only when no mount is left in it.
func sweepFuzzStacks() {
	dirs, _ := filepath.Glob(filepath.Join("/var/tmp", fuzzDirPrefix+"*"))
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue // being set up, or not ours
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || owner == os.Getpid() {
			continue
		}
		if err := syscall.Kill(owner, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // still alive
		}
		killRuncContainers(fuzzNamespace(owner))
		ctrd := &testenv.Containerd{Dir: dir, Address: filepath.Join(dir, "containerd", "containerd.sock")}
		_ = ctrd.Stop() // kills the shims told that address, detaches every mount under dir
		if mounts, err := testenv.MountsUnder(dir); err == nil && len(mounts) == 0 {
			os.RemoveAll(dir)
		}
	}
}

// killRuncContainers kills the init process of each container runc
// holds for containerd namespace ns (the pause container of a dead fuzz
// stack's host pod, which takes its pod's processes with it) and drops
// runc's state for ns. Shims killed first would leave these orphaned.
func killRuncContainers(ns string) {
	states, _ := filepath.Glob(filepath.Join("/run/containerd/runc", ns, "*", "state.json"))
	for _, path := range states {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var st struct {
			InitPID int `json:"init_process_pid"`
		}
		if json.Unmarshal(raw, &st) == nil && st.InitPID > 1 {
			_ = syscall.Kill(st.InitPID, syscall.SIGKILL)
		}
	}
	_ = os.RemoveAll(filepath.Join("/run/containerd/runc", ns))
}

// checkStatus fails unless err is nil or a gRPC status a client can act
// on: Unknown and Internal mean an unmapped error or a caught panic.
func checkStatus(t *testing.T, what string, err error) codes.Code {
	t.Helper()
	if err == nil {
		return codes.OK
	}
	err = toStatus(err)
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: not a gRPC status: %v", what, err)
	}
	if st.Code() == codes.Unknown || st.Code() == codes.Internal {
		t.Fatalf("%s: %v", what, err)
	}
	return st.Code()
}

// call runs a handler with a panic turned into a test failure naming it.
func call(t *testing.T, what string, fn func() error) codes.Code {
	t.Helper()
	err := noPanic(t, what, fn)
	code := checkStatus(t, what, err)
	if testing.Verbose() {
		t.Logf("%s: %v %v", what, code, err)
	}
	return code
}

func namespaceMode(v int32) runtime.NamespaceMode {
	// NODE for the pod network would leave the loopback-only CNI and
	// start real pods; every other value, valid or not, is fair game.
	m := runtime.NamespaceMode(v % 5)
	if m < 0 {
		m = -m
	}
	return m
}

// FuzzCRIRequests feeds malformed pod and container configs and IDs to the
// handlers: absent and odd metadata, huge strings, log paths and mounts
// with path traversal, invalid IDs and conflicting namespace options.
// Every input must yield a gRPC status (never a panic, never Unknown or
// Internal) and leave nothing behind.
func FuzzCRIRequests(f *testing.F) {
	f.Add("pod", "ns", "uid", uint32(0), true, "ctr", true, "ctr.log", "/data", "/tmp", "", int32(0), int32(0), int32(0), "", "net.core.somaxconn", "1024", uint16(0))
	f.Add("", "", "", uint32(1), true, "", false, "../../etc/passwd", "", "", "abc", int32(2), int32(3), int32(1), "nonexistent", "", "", uint16(0))
	f.Add("p/../x", "ns", "u", uint32(7), false, "c", true, "a/../../escape.log", "/etc/../..", "/proc/self", "0f0f", int32(1), int32(3), int32(4), "x", "kernel.shm_rmid_forced", "1", uint16(4096))
	f.Add("p", "n", "u", uint32(0), true, "c", true, "/abs/path.log", "relative", "../host", strings.Repeat("f", 64), int32(-1), int32(9), int32(2), "", "net.ipv4.ip_forward", "1", uint16(65535))
	f.Add("p\x00q", "n\n", "u\t", uint32(4294967295), true, "c\x00", true, "..", "/", "/", "\x00", int32(2147483647), int32(-2147483648), int32(0), "..", "../x", "\x00", uint16(1))

	f.Fuzz(func(t *testing.T, podName, podNS, podUID string, attempt uint32, runPod bool,
		ctrName string, knownImage bool, logPath, mountCtr, mountHost, id string,
		nsNet, nsPID, nsIPC int32, targetID, sysctlKey, sysctlVal string, huge uint16) {
		// Proto3 strings are UTF-8: gRPC refuses anything else before a
		// handler runs, so such inputs cannot reach crishim.
		for _, s := range []string{podName, podNS, podUID, ctrName, logPath, mountCtr, mountHost, id, targetID, sysctlKey, sysctlVal} {
			if !utf8.ValidString(s) {
				t.Skip("not UTF-8")
			}
		}
		fuzzStack.once.Do(func() { fuzzStack.err = setupFuzzStack() })
		// A stack that cannot be set up fails every input: skipping would
		// let the whole corpus "pass" without one request made. `make test`
		// runs as root with containerd installed.
		if fuzzStack.err != nil {
			t.Fatalf("fuzz stack (private containerd, crishim in-process): %v", fuzzStack.err)
		}
		s := fuzzStack.s
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		big := strings.Repeat("x", int(huge)%(64<<10))

		nsOpts := &runtime.NamespaceOption{Network: namespaceMode(nsNet), Pid: runtime.NamespaceMode(nsPID), Ipc: runtime.NamespaceMode(nsIPC), TargetId: targetID}
		if runPod {
			pod := &runtime.PodSandboxConfig{
				Metadata:     &runtime.PodSandboxMetadata{Name: podName, Namespace: podNS, Uid: podUID, Attempt: attempt},
				Hostname:     podName,
				LogDirectory: mountHost,
				Labels:       map[string]string{"big": big, podName: podNS},
				Annotations:  map[string]string{big: podUID},
				Linux: &runtime.LinuxPodSandboxConfig{
					Sysctls:         map[string]string{sysctlKey: sysctlVal},
					SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: nsOpts},
				},
			}
			var podID string
			code := call(t, "RunPodSandbox", func() error {
				handler := ""
				if attempt%4 == 3 {
					handler = sysctlVal
				}
				resp, err := s.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod, RuntimeHandler: handler})
				if err == nil {
					podID = resp.PodSandboxId
				}
				return err
			})
			if code == codes.OK {
				// Only a pod network reaches here, which the loopback CNI refuses.
				t.Errorf("RunPodSandbox succeeded on a network with no IP: %s", podID)
				call(t, "StopPodSandbox", func() error {
					_, err := s.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID})
					return err
				})
				call(t, "RemovePodSandbox", func() error {
					_, err := s.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
					return err
				})
			}
		}

		image := id + big
		if knownImage {
			image = fuzzStack.image
		}
		ctr := &runtime.ContainerConfig{
			Metadata:    &runtime.ContainerMetadata{Name: ctrName, Attempt: attempt},
			Image:       &runtime.ImageSpec{Image: image},
			Command:     []string{ctrName, big},
			LogPath:     logPath,
			Labels:      map[string]string{ctrName: big},
			Annotations: map[string]string{"a": big},
			Mounts:      []*runtime.Mount{{ContainerPath: mountCtr, HostPath: mountHost, Readonly: attempt%2 == 0}},
			Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
				NamespaceOptions: nsOpts,
			}},
		}
		var ctrID string
		code := call(t, "CreateContainer", func() error {
			resp, err := s.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: fuzzStack.podID, Config: ctr, SandboxConfig: fuzzStack.pod})
			if err == nil {
				ctrID = resp.ContainerId
			}
			return err
		})
		if code == codes.OK {
			// A log path that resolved must lie inside the pod's log directory.
			call(t, "ContainerStatus", func() error {
				resp, err := s.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctrID})
				if err == nil && resp.Status.LogPath != "" {
					rel, rerr := filepath.Rel(fuzzStack.pod.LogDirectory, resp.Status.LogPath)
					if rerr != nil || rel == ".." || strings.HasPrefix(rel, "../") {
						t.Errorf("log path %q from %q escapes %s", resp.Status.LogPath, logPath, fuzzStack.pod.LogDirectory)
					}
				}
				return err
			})
			call(t, "RemoveContainer", func() error {
				_, err := s.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: ctrID})
				return err
			})
		}

		// ID-based calls with a fuzzed ID. The one pod must survive: IDs
		// that could resolve to it (as a prefix) skip the destructive calls.
		call(t, "ContainerStatus", func() error {
			_, err := s.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
			return err
		})
		call(t, "PodSandboxStatus", func() error {
			_, err := s.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
			return err
		})
		call(t, "ExecSync", func() error {
			_, err := s.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{ctrName}, Timeout: 1})
			return err
		})
		call(t, "StopContainer", func() error {
			_, err := s.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: int64(attempt % 3)})
			return err
		})
		call(t, "RemoveContainer", func() error {
			_, err := s.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id})
			return err
		})
		call(t, "ReopenContainerLog", func() error {
			_, err := s.ReopenContainerLog(ctx, &runtime.ReopenContainerLogRequest{ContainerId: id})
			return err
		})
		call(t, "ListContainers", func() error {
			_, err := s.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: id, PodSandboxId: targetID, LabelSelector: map[string]string{ctrName: big}}})
			return err
		})
		if !strings.HasPrefix(fuzzStack.podID, id) {
			call(t, "StopPodSandbox", func() error {
				_, err := s.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id})
				return err
			})
			call(t, "RemovePodSandbox", func() error {
				_, err := s.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id})
				return err
			})
		}

		// Nothing stays: one pod, no containers, nothing extra in containerd.
		pods, _ := s.sandboxes.List(ctx, nil)
		ctrs, _ := s.ListContainers(ctx, &runtime.ListContainersRequest{})
		if len(pods) != 1 || len(ctrs.GetContainers()) != 0 {
			t.Fatalf("after the input: %d pods (want the 1 host pod), %d containers (want 0)", len(pods), len(ctrs.GetContainers()))
		}
		list, err := s.client.Containers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 {
			var ids []string
			for _, c := range list {
				ids = append(ids, c.ID())
			}
			t.Fatalf("containerd holds %d containers after the input, want only the host pod's: %v", len(list), ids)
		}
		if entries, _ := os.ReadDir(filepath.Join(fuzzStack.dir, "state", "netns")); len(entries) != 0 {
			t.Fatalf("%d network namespaces left after the input", len(entries))
		}
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	teardownFuzzStack()
	// Under -fuzz this process is the coordinator: its workers are gone
	// now, some perhaps killed before their own teardown.
	if os.Geteuid() == 0 {
		sweepFuzzStacks()
	}
	os.Exit(code)
}
