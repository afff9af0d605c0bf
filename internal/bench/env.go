//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/stack"
)

// Namespaces of the two runtimes on the shared containerd. containerd's
// CRI plugin always uses k8s.io.
const (
	NamespaceContainerdCRI = "k8s.io"
	NamespaceCrishim       = "crishim-bench"
)

// Env is the benchmark's private world: one containerd with its CRI
// plugin enabled, a registry with busybox and pause, one CNI network per
// runtime, and crishim on the same containerd.
type Env struct {
	Dir    string
	RunDir string // tmpfs: the CRI plugin's runc state

	Registry   *stack.Registry
	Containerd *stack.Containerd
	Crishim    *stack.Crishim
	NetA, NetB *stack.Network

	Image, SandboxImage string
	// DebugAddress is crishim's pprof endpoint (EnvOptions.Profiling).
	DebugAddress string
}

// EnvOptions say how to build the environment.
type EnvOptions struct {
	RepoRoot string
	// CrishimBinary is used as is when set; otherwise crishim is built.
	CrishimBinary string
	Progress      io.Writer
	// Profiling serves pprof on DebugAddress. Off, crishim runs as it is
	// deployed by default: pprof off, heap profile sampling with it.
	Profiling bool
}

// SetupEnv starts everything; on failure what was started is torn down.
func SetupEnv(opts EnvOptions) (_ *Env, retErr error) {
	if err := stack.RequireBinaries(); err != nil {
		return nil, err
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	dir, err := os.MkdirTemp("/var/tmp", "crishim-bench-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir}
	defer func() {
		if retErr != nil {
			if err := e.Teardown(true); err != nil {
				retErr = fmt.Errorf("%w\n(teardown: %v)", retErr, err)
			}
			retErr = fmt.Errorf("%w\n(logs kept in %s)", retErr, filepath.Join(e.Dir, "logs"))
		}
	}()
	if e.RunDir, err = os.MkdirTemp("/run", "crishim-bench-"); err != nil {
		return nil, err
	}
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}

	bin := opts.CrishimBinary
	if bin == "" {
		bin = filepath.Join(dir, "bin", "crishim")
		fmt.Fprintln(progress, "building crishim")
		if err := stack.BuildCrishim(opts.RepoRoot, bin, false); err != nil {
			return nil, err
		}
	}
	pauseBin, err := stack.BuildPause(opts.RepoRoot)
	if err != nil {
		return nil, err
	}

	fmt.Fprintln(progress, "starting the registry and pushing busybox and pause")
	if e.Registry, err = stack.StartRegistry(filepath.Join(dir, "registry"), filepath.Join(logs, "registry.log")); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	busybox, err := stack.BusyboxImage(stack.ImageOptions{})
	if err != nil {
		return nil, err
	}
	if err := e.Registry.Push(ctx, "busybox", "bench", busybox); err != nil {
		return nil, err
	}
	pause, err := stack.PauseImage(pauseBin)
	if err != nil {
		return nil, err
	}
	if err := e.Registry.Push(ctx, "crishim/pause", "bench", pause); err != nil {
		return nil, err
	}
	e.Image = stack.RegistryAlias + "/busybox:bench"
	e.SandboxImage = stack.RegistryAlias + "/crishim/pause:bench"
	certs := filepath.Join(dir, "certs.d")
	if err := stack.WriteRegistryHosts(certs, e.Registry.Host, stack.RegistryAlias); err != nil {
		return nil, err
	}

	if e.NetA, err = stack.WriteNetworkSized(filepath.Join(dir, "cni-a"), podSubnetPrefix); err != nil {
		return nil, err
	}
	for {
		if e.NetB, err = stack.WriteNetworkSized(filepath.Join(dir, "cni-b"), podSubnetPrefix); err != nil {
			return nil, err
		}
		// Neither bridge exists yet, so WriteNetwork cannot see the
		// other's subnet: compare here.
		if !e.NetB.Subnet.Contains(e.NetA.Subnet.IP) && e.NetB.Bridge != e.NetA.Bridge {
			break
		}
		_ = os.RemoveAll(e.NetB.ConfDir)
	}

	fmt.Fprintln(progress, "starting containerd with its CRI plugin")
	e.Containerd, err = stack.StartContainerdWith(filepath.Join(dir, "containerd"), filepath.Join(logs, "containerd.log"),
		stack.ContainerdOptions{CRIConfig: stack.CRIPlugin{SandboxImage: e.SandboxImage, CNIConfDir: e.NetA.ConfDir, RegistryConfigDir: certs, RuncRoot: filepath.Join(e.RunDir, "runc")}.Config()})
	if err != nil {
		return nil, err
	}
	if err := waitCRI(e.Containerd.Address, 30*time.Second); err != nil {
		return nil, fmt.Errorf("containerd's CRI plugin: %w\n%s", err, stack.Tail(filepath.Join(logs, "containerd.log"), 30))
	}

	args := []string{"--log-level", "info", "--sandbox-image", e.SandboxImage}
	if opts.Profiling {
		port, err := stack.FreePort()
		if err != nil {
			return nil, err
		}
		e.DebugAddress = fmt.Sprintf("127.0.0.1:%d", port)
		args = append(args, "--debug-address", e.DebugAddress)
	}
	fmt.Fprintln(progress, "starting crishim")
	root := filepath.Join(dir, "crishim")
	for _, d := range []string{filepath.Join(root, "root"), filepath.Join(root, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	e.Crishim, err = stack.StartCrishim(stack.CrishimConfig{
		Binary:              bin,
		Dir:                 root,
		ContainerdAddress:   e.Containerd.Address,
		ContainerdNamespace: NamespaceCrishim,
		Root:                filepath.Join(root, "root"),
		State:               filepath.Join(root, "state"),
		CNIConfDir:          e.NetB.ConfDir,
		RegistryConfigDir:   certs,
		LogPath:             filepath.Join(logs, "crishim.log"),
		// The harness asks for debug logs; a benchmark runs as a node
		// would, and containerd logs at info too.
		ExtraArgs: args,
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// waitCRI waits until the CRI service on socket reports its runtime and
// network ready.
func waitCRI(socket string, timeout time.Duration) error {
	conn, err := dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := rt.Status(ctx, &runtime.StatusRequest{})
		cancel()
		if err == nil {
			ready := 0
			for _, c := range resp.GetStatus().GetConditions() {
				if c.Status {
					ready++
				}
			}
			if ready >= 2 {
				return nil
			}
			err = fmt.Errorf("status %v", resp.GetStatus().GetConditions())
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %w", timeout, last)
}

// Endpoints are the two runtimes as the benchmark sees them.
func (e *Env) Endpoints() (a, b Endpoint) {
	a = Endpoint{Name: "containerd 1.6 CRI plugin", Socket: e.Containerd.Address, PID: e.Containerd.Pid(), ShimNamespace: NamespaceContainerdCRI, ShimAddress: e.Containerd.Address}
	b = Endpoint{Name: "crishim", Socket: e.Crishim.Socket, PID: e.Crishim.Pid(), ShimNamespace: NamespaceCrishim, ShimAddress: e.Containerd.Address}
	return a, b
}

// podSubnetPrefix sizes each runtime's pod network: a /22 holds the
// scale round's 500 pods and more (a /24's 253 addresses do not).
const podSubnetPrefix = 22

// PodAddresses is how many pods each runtime's network can address.
func (e *Env) PodAddresses() int {
	ones, bits := e.NetA.Subnet.Mask.Size()
	return 1<<(bits-ones) - 3 // network, gateway, broadcast
}

// Leaks lists what side ("A" or "B") left behind in containerd, in its
// CNI network and as mounts under the environment's directory.
func (e *Env) Leaks(side string) ([]string, error) {
	ns, network := NamespaceContainerdCRI, e.NetA
	if side == "B" {
		ns, network = NamespaceCrishim, e.NetB
	}
	return stack.Leaks(e.Containerd, ns, network, e.Dir)
}

// CPUProfile fetches a CPU profile of crishim over seconds into path.
func (e *Env) CPUProfile(path string, seconds int) error {
	return e.fetchProfile(path, fmt.Sprintf("profile?seconds=%d", seconds), time.Duration(seconds+30)*time.Second)
}

// Trace fetches a Go execution trace of crishim over seconds into path
// (go tool trace reads it).
func (e *Env) Trace(path string, seconds int) error {
	return e.fetchProfile(path, fmt.Sprintf("trace?seconds=%d", seconds), time.Duration(seconds+30)*time.Second)
}

// HeapProfile fetches crishim's heap profile (after a GC) into path.
func (e *Env) HeapProfile(path string) error {
	return e.fetchProfile(path, "heap?gc=1", 30*time.Second)
}

func (e *Env) fetchProfile(path, query string, timeout time.Duration) error {
	return stack.Download(fmt.Sprintf("http://%s/debug/pprof/%s", e.DebugAddress, query), path, timeout)
}

// Teardown stops crishim, containerd (killing any task left) and the
// registry, removes both CNI networks and every file but, with keepLogs,
// the logs.
func (e *Env) Teardown(keepLogs bool) error {
	var errs []error
	if e.Crishim != nil {
		errs = append(errs, e.Crishim.Stop())
	}
	if e.Containerd != nil {
		errs = append(errs, e.Containerd.Stop())
	}
	if e.Registry != nil {
		errs = append(errs, e.Registry.Stop())
	}
	for _, n := range []*stack.Network{e.NetA, e.NetB} {
		if n != nil {
			errs = append(errs, n.Cleanup())
		}
	}
	for _, d := range []string{e.Dir, e.RunDir} {
		if d == "" {
			continue
		}
		errs = append(errs, stack.UnmountAll(d))
		if keepLogs && d == e.Dir {
			entries, _ := os.ReadDir(d)
			for _, ent := range entries {
				if ent.Name() != "logs" {
					errs = append(errs, os.RemoveAll(filepath.Join(d, ent.Name())))
				}
			}
			continue
		}
		errs = append(errs, os.RemoveAll(d))
	}
	return errors.Join(errs...)
}
