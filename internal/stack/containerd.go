//go:build linux

package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
)

// Containerd is a private containerd daemon: its own root, state and socket,
// its CRI plugin disabled so it cannot be mistaken for crishim.
type Containerd struct {
	Dir      string
	Address  string
	LogPath  string
	confPath string
	d        *daemon
}

// ContainerdOptions vary a private containerd.
type ContainerdOptions struct {
	// CRIConfig, when set, enables containerd's own CRI plugin with these
	// TOML tables (the benchmark's reference runtime); otherwise the
	// plugin is disabled.
	CRIConfig string
}

// StartContainerd starts containerd with everything under dir and waits
// until it serves its API.
func StartContainerd(dir, logPath string) (*Containerd, error) {
	return StartContainerdWith(dir, logPath, ContainerdOptions{})
}

// StartContainerdWith is StartContainerd with options.
func StartContainerdWith(dir, logPath string, opts ContainerdOptions) (*Containerd, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	c := &Containerd{Dir: dir, Address: filepath.Join(dir, "containerd.sock"), LogPath: logPath}
	// oom_score = 0 keeps containerd from lowering its own oom_score_adj,
	// which needs CAP_SYS_RESOURCE these machines lack.
	disabled := `disabled_plugins = ["io.containerd.grpc.v1.cri"]`
	if opts.CRIConfig != "" {
		disabled = ""
	}
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
%s
oom_score = 0

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, c.Address, c.Address+".ttrpc", filepath.Join(dir, "opt"))
	conf += opts.CRIConfig
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	c.confPath = confPath
	if err := c.startDaemon(); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// startDaemon runs containerd on the written config and waits until it serves.
func (c *Containerd) startDaemon() error {
	d, err := startDaemon("containerd", c.LogPath, "containerd", "--config", c.confPath, "--log-level", "info")
	if err != nil {
		return err
	}
	c.d = d
	return poll(30*time.Second, 50*time.Millisecond, "containerd to serve on "+c.Address, func() (bool, error) {
		if err := d.exited(); err != nil {
			return false, err
		}
		if _, err := os.Stat(c.Address); err != nil {
			return false, nil
		}
		client, err := containerd.New(c.Address, containerd.WithTimeout(2*time.Second))
		if err != nil {
			return false, err
		}
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = client.Version(ctx)
		return err == nil, err
	})
}

// Restart stops the daemon with SIGTERM - leaving its shims and their
// containers running, as a node's containerd upgrade does - calls during
// (with containerd down) and starts it again on the same configuration.
func (c *Containerd) Restart(during func() error) error {
	if c.d == nil || c.d.exited() != nil {
		return errors.New("containerd is not running")
	}
	if err := c.d.stop(15 * time.Second); err != nil {
		return err
	}
	return c.startAfter(during)
}

// Crash is Restart with SIGKILL instead of SIGTERM: containerd gets no
// chance to finish what it was doing or to close its connections.
func (c *Containerd) Crash(during func() error) error {
	if c.d == nil || c.d.exited() != nil {
		return errors.New("containerd is not running")
	}
	_ = c.d.cmd.Process.Kill()
	<-c.d.done
	return c.startAfter(during)
}

// startAfter calls during, with containerd down, and starts it again.
func (c *Containerd) startAfter(during func() error) error {
	var errs []error
	if during != nil {
		errs = append(errs, during())
	}
	errs = append(errs, c.startDaemon())
	return errors.Join(errs...)
}

// Pid is the running daemon's process ID (0 when stopped).
func (c *Containerd) Pid() int {
	if c.d == nil || c.d.exited() != nil {
		return 0
	}
	return c.d.cmd.Process.Pid
}

// Shims lists the PIDs of the runc shims serving this containerd.
func (c *Containerd) Shims() []int {
	return ProcessesWithArgs("containerd-shim-runc-v2", "-address", c.Address)
}

// ShimOf lists the PIDs of the runc shims serving this containerd that
// were started for task id (a pod's shim is started for its pause).
func (c *Containerd) ShimOf(id string) []int {
	ours := map[int]bool{}
	for _, pid := range c.Shims() {
		ours[pid] = true
	}
	var out []int
	for _, pid := range ProcessesWithArgs("containerd-shim-runc-v2", "-id", id) {
		if ours[pid] {
			out = append(out, pid)
		}
	}
	return out
}

// Client connects to the daemon with ns as the default namespace.
func (c *Containerd) Client(ns string) (*containerd.Client, error) {
	return containerd.New(c.Address, containerd.WithDefaultNamespace(ns), containerd.WithTimeout(10*time.Second))
}

// Stop kills whatever tasks are left, stops the daemon and the shims that
// served it, and unmounts what they left under Dir.
func (c *Containerd) Stop() error {
	var errs []error
	if c.d != nil && c.d.exited() == nil {
		if err := c.reapTasks(); err != nil {
			errs = append(errs, err)
		}
		if err := c.d.stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	// Shims outlive containerd by design; ours are the ones told our address.
	for _, pid := range ProcessesWithArgs("containerd-shim-runc-v2", "-address", c.Address) {
		errs = append(errs, fmt.Errorf("containerd-shim-runc-v2 pid %d was still running; killed", pid))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := UnmountAll(c.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reapTasks kills and deletes every task in every namespace so that no
// container process outlives the test run. Finding any is not an error here;
// the suite's leak checks report it.
func (c *Containerd) reapTasks() error {
	client, err := containerd.New(c.Address, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect to containerd for cleanup: %w", err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nss, err := client.NamespaceService().List(ctx)
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, err := client.Containers(nctx)
		if err != nil {
			continue
		}
		for _, ctr := range ctrs {
			if task, err := ctr.Task(nctx, nil); err == nil {
				_, _ = task.Delete(nctx, containerd.WithProcessKill)
			}
			_ = ctr.Delete(nctx, containerd.WithSnapshotCleanup)
		}
		// The runc shim keeps its state in a per-namespace directory of a
		// fixed root shared by every containerd; drop ours once it is empty.
		_ = os.Remove(filepath.Join("/run/containerd/runc", ns))
	}
	return nil
}

// CRIPlugin is how containerd 1.6's own CRI plugin is set up when it runs
// as the reference runtime (the benchmark's A side, the kubelet A/B): as
// the critest reference is on these machines (cgroupfs,
// restrict_oom_score_adj without CAP_SYS_RESOURCE, a hosts.toml registry
// directory), with its own CNI directory, pause image and runc root.
type CRIPlugin struct {
	SandboxImage      string
	CNIConfDir        string
	RegistryConfigDir string
	RuncRoot          string
	// MetricsAddress, when set, serves containerd's metrics, which count
	// its gRPC calls.
	MetricsAddress string
}

// Config is the containerd configuration fragment for ContainerdOptions.CRIConfig.
func (p CRIPlugin) Config() string {
	metrics := ""
	if p.MetricsAddress != "" {
		metrics = fmt.Sprintf("[metrics]\n  address = %q\n", p.MetricsAddress)
	}
	return metrics + fmt.Sprintf(`
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, p.SandboxImage, p.RuncRoot, CNIBinDir, p.CNIConfDir, p.RegistryConfigDir)
}
