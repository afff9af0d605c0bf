// Package preflight answers, check by check, whether a machine can run
// pods with crishim's configuration: `crishim check`. The checks are pure
// logic over Probes, so every verdict is testable without the machine.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/crishim/crishim/internal/config"
)

// Level is a check's verdict.
type Level int

const (
	OK Level = iota
	Warn
	Fail
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	default:
		return "fail"
	}
}

// Result is one line of the report; Fix says what to do about a warn or fail.
type Result struct {
	Name   string
	Level  Level
	Detail string
	Fix    string
}

// ContainerdInfo is what a reachable containerd says about itself.
type ContainerdInfo struct {
	Version string
	Plugins []Plugin
}

// Plugin is one entry of containerd's introspection service.
type Plugin struct {
	Type, ID string
	// InitErr is why the plugin failed to load; empty when it loaded.
	InitErr string
}

// CNIState is the pod network configuration crishim would load.
type CNIState struct {
	// Builtin is set when the conf dir holds no configuration and the
	// built-in bridge is used.
	Builtin bool
	// Err is why the configuration is not usable (nil: it is, with all plugins found).
	Err error
}

// Probes are the checks' view of the machine.
type Probes struct {
	ReadFile  func(path string) ([]byte, error)
	WriteFile func(path string, data []byte) error
	LookPath  func(name string) (string, error)
	// Output runs a command and returns its standard output.
	Output func(name string, args ...string) (string, error)
	// FSType is statfs(2)'s f_type for path.
	FSType func(path string) (int64, error)
	// Writable reports nil when path (an existing directory) can be written to.
	Writable func(path string) error
	// Exists reports whether path exists.
	Exists     func(path string) bool
	Containerd func(ctx context.Context, address string) (ContainerdInfo, error)
	CNI        func(cfg config.Config) CNIState
}

// Filesystem magic numbers (statfs f_type) that tell the cgroup layout.
const (
	cgroup2Magic = 0x63677270
	tmpfsMagic   = 0x01021994
)

// Run performs every check against cfg, in the order they are reported.
func Run(ctx context.Context, cfg config.Config, p Probes) []Result {
	var out []Result
	info, cerr := p.Containerd(ctx, cfg.ContainerdAddress)
	out = append(out, checkContainerd(cfg, info, cerr), checkSnapshotter(cfg, info, cerr))
	out = append(out, checkRunc(p), checkShim(cfg, p), checkCNI(cfg, p))
	out = append(out, checkCgroups(p), checkCgroupDriver(cfg, p))
	out = append(out, checkOverlay(cfg, p), checkSeccomp(p), checkUserNS(p), checkIDMap(cfg, p))
	out = append(out, checkOOMScoreAdj(p), checkSocketDir(cfg, p))
	return out
}

// Failed reports whether any check failed.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Level == Fail {
			return true
		}
	}
	return false
}

// Print writes the report: "<level>  <check>: <detail>" and, for warn and
// fail, an indented fix line.
func Print(w io.Writer, results []Result) {
	for _, r := range results {
		fmt.Fprintf(w, "%-4s  %s: %s\n", r.Level, r.Name, r.Detail)
		if r.Level != OK && r.Fix != "" {
			fmt.Fprintf(w, "      fix: %s\n", r.Fix)
		}
	}
}

// minContainerd is the oldest containerd crishim is tested against.
var minContainerd = [2]int{1, 6}

func checkContainerd(cfg config.Config, info ContainerdInfo, err error) Result {
	r := Result{Name: "containerd"}
	if err != nil {
		r.Level, r.Detail = Fail, fmt.Sprintf("not reachable at %s: %v", cfg.ContainerdAddress, err)
		r.Fix = "start containerd (systemctl start containerd) or point containerd-address at its socket"
		return r
	}
	r.Detail = fmt.Sprintf("version %s at %s", info.Version, cfg.ContainerdAddress)
	if v, ok := majorMinor(strings.TrimPrefix(info.Version, "v")); ok && less(v, minContainerd) {
		r.Level = Warn
		r.Fix = fmt.Sprintf("upgrade containerd to %d.%d or later", minContainerd[0], minContainerd[1])
	}
	return r
}

const snapshotterType = "io.containerd.snapshotter.v1"

func checkSnapshotter(cfg config.Config, info ContainerdInfo, cerr error) Result {
	r := Result{Name: "snapshotter"}
	if cerr != nil {
		r.Level, r.Detail = Warn, fmt.Sprintf("%s not checked: containerd not reachable", cfg.Snapshotter)
		r.Fix = "see the containerd check"
		return r
	}
	for _, pl := range info.Plugins {
		if pl.Type != snapshotterType || pl.ID != cfg.Snapshotter {
			continue
		}
		if pl.InitErr != "" {
			r.Level, r.Detail = Fail, fmt.Sprintf("%s.%s did not load: %s", snapshotterType, cfg.Snapshotter, pl.InitErr)
			r.Fix = "fix the cause in containerd's log, or choose another snapshotter (snapshotter key)"
			return r
		}
		r.Detail = fmt.Sprintf("%s.%s loaded", snapshotterType, cfg.Snapshotter)
		return r
	}
	r.Level, r.Detail = Fail, fmt.Sprintf("containerd has no plugin %s.%s", snapshotterType, cfg.Snapshotter)
	r.Fix = "enable it in containerd's config, or choose another snapshotter (snapshotter key)"
	return r
}

func checkRunc(p Probes) Result {
	r := Result{Name: "runc"}
	path, err := p.LookPath("runc")
	if err != nil {
		r.Level, r.Detail, r.Fix = Fail, "runc not found in PATH", "apt-get install runc"
		return r
	}
	out, err := p.Output(path, "--version")
	if err != nil {
		r.Level, r.Detail = Fail, fmt.Sprintf("%s --version: %v", path, err)
		r.Fix = "reinstall runc (apt-get install --reinstall runc)"
		return r
	}
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	r.Detail = fmt.Sprintf("%s (%s)", path, first)
	return r
}

// shimBinary is the program containerd starts for a runtime name, by
// containerd's naming rule: io.containerd.runc.v2 → containerd-shim-runc-v2.
func shimBinary(runtime string) string {
	name := strings.TrimPrefix(runtime, "io.containerd.")
	return "containerd-shim-" + strings.ReplaceAll(name, ".", "-")
}

func checkShim(cfg config.Config, p Probes) Result {
	bin := shimBinary(cfg.Runtime)
	r := Result{Name: "runtime shim"}
	path, err := p.LookPath(bin)
	if err != nil {
		// containerd may well have a PATH of its own that finds it.
		r.Level, r.Detail = Warn, fmt.Sprintf("%s (runtime %s) not found in PATH", bin, cfg.Runtime)
		r.Fix = "install it next to containerd (apt-get install containerd), or set runtime"
		return r
	}
	r.Detail = fmt.Sprintf("%s for %s", path, cfg.Runtime)
	return r
}

func checkCNI(cfg config.Config, p Probes) Result {
	r := Result{Name: "cni"}
	st := p.CNI(cfg)
	if st.Err != nil {
		r.Level, r.Detail = Fail, st.Err.Error()
		r.Fix = fmt.Sprintf("install the plugins (apt-get install containernetworking-plugins) or set cni-bin-dir; fix or remove the configuration in %s", cfg.CNIConfDir)
		return r
	}
	if st.Builtin {
		r.Detail = fmt.Sprintf("no configuration in %s: built-in bridge network, plugins found in %s", cfg.CNIConfDir, cfg.CNIBinDir)
	} else {
		r.Detail = fmt.Sprintf("configuration in %s loads, plugins found in %s", cfg.CNIConfDir, cfg.CNIBinDir)
	}
	return r
}

// cgroupControllers are those the kubelet and runc need for pods' limits.
var cgroupControllers = []string{"cpu", "cpuset", "memory", "pids"}

func checkCgroups(p Probes) Result {
	r := Result{Name: "cgroups"}
	fsType, err := p.FSType("/sys/fs/cgroup")
	if err != nil {
		r.Level, r.Detail, r.Fix = Fail, fmt.Sprintf("statfs /sys/fs/cgroup: %v", err), "mount the cgroup filesystem on /sys/fs/cgroup"
		return r
	}
	var missing []string
	switch fsType {
	case cgroup2Magic:
		data, err := p.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if err != nil {
			r.Level, r.Detail, r.Fix = Fail, fmt.Sprintf("cgroup v2: %v", err), "check the cgroup2 mount on /sys/fs/cgroup"
			return r
		}
		have := map[string]bool{}
		for _, c := range strings.Fields(string(data)) {
			have[c] = true
		}
		for _, c := range cgroupControllers {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		r.Detail = "v2 (unified)"
	case tmpfsMagic:
		data, err := p.ReadFile("/proc/cgroups")
		if err != nil {
			r.Level, r.Detail, r.Fix = Fail, fmt.Sprintf("cgroup v1: %v", err), "check the cgroup mounts under /sys/fs/cgroup"
			return r
		}
		missing = missingV1Controllers(string(data))
		r.Detail = "v1"
		if fs, err := p.FSType("/sys/fs/cgroup/unified"); err == nil && fs == cgroup2Magic {
			r.Detail = "v1 (hybrid)"
		}
	default:
		r.Level, r.Detail = Fail, fmt.Sprintf("/sys/fs/cgroup is neither cgroup2 nor a tmpfs of v1 hierarchies (f_type %#x)", fsType)
		r.Fix = "boot a kernel and init that mount cgroups on /sys/fs/cgroup"
		return r
	}
	if len(missing) > 0 {
		r.Level = Fail
		r.Detail += "; controllers not available: " + strings.Join(missing, ", ")
		r.Fix = "enable them on the kernel command line (e.g. cgroup_enable=memory) or in the parent cgroup's cgroup.subtree_control"
		return r
	}
	if strings.HasPrefix(r.Detail, "v1") {
		// Kubernetes keeps v1 in maintenance only; recent kubelets refuse it by default.
		r.Level = Warn
		r.Fix = "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2; kubelets from 1.35 need failCgroupV1: false on v1"
	}
	return r
}

// missingV1Controllers reads /proc/cgroups ("name hierarchy num enabled")
// and lists the needed controllers that are disabled or not mounted.
func missingV1Controllers(procCgroups string) []string {
	usable := map[string]bool{}
	for _, line := range strings.Split(procCgroups, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		usable[f[0]] = f[1] != "0" && f[3] == "1"
	}
	var missing []string
	for _, c := range cgroupControllers {
		if !usable[c] {
			missing = append(missing, c)
		}
	}
	return missing
}

func pid1IsSystemd(p Probes) bool {
	comm, err := p.ReadFile("/proc/1/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "systemd"
}

func checkCgroupDriver(cfg config.Config, p Probes) Result {
	r := Result{Name: "cgroup driver"}
	systemd := pid1IsSystemd(p)
	switch cfg.CgroupDriver {
	case "systemd":
		if !systemd {
			r.Level, r.Detail = Fail, "systemd configured but PID 1 is not systemd"
			r.Fix = "set cgroup-driver = \"cgroupfs\" (and the kubelet's cgroupDriver to match)"
			return r
		}
		r.Detail = "systemd (configured; PID 1 is systemd)"
	case "cgroupfs":
		r.Detail = "cgroupfs (configured)"
		if systemd {
			// Two managers of one cgroup tree: the kubelet docs warn against it.
			r.Level = Warn
			r.Detail += " while PID 1 is systemd"
			r.Fix = "prefer cgroup-driver = \"systemd\" on systemd machines, with the kubelet's cgroupDriver set to match"
		}
	default:
		if systemd {
			r.Detail = "systemd (detected: PID 1 is systemd)"
		} else {
			r.Detail = "cgroupfs (detected: PID 1 is not systemd)"
		}
	}
	return r
}

func checkOverlay(cfg config.Config, p Probes) Result {
	r := Result{Name: "overlayfs"}
	data, err := p.ReadFile("/proc/filesystems")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && f[len(f)-1] == "overlay" {
				r.Detail = "overlay in /proc/filesystems"
				return r
			}
		}
	}
	r.Detail = "overlay not in /proc/filesystems (the module may just not be loaded yet)"
	r.Level, r.Fix = Warn, "modprobe overlay (and add it to /etc/modules-load.d)"
	if err != nil {
		r.Detail = fmt.Sprintf("read /proc/filesystems: %v", err)
	}
	if cfg.Snapshotter != "overlayfs" {
		r.Fix += "; only needed for the overlayfs snapshotter"
	}
	return r
}

func kernelRelease(p Probes) string {
	data, err := p.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func checkSeccomp(p Probes) Result {
	r := Result{Name: "seccomp"}
	if data, err := p.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "Seccomp:") {
				r.Detail = "supported by the kernel (Seccomp in /proc/self/status)"
				return r
			}
		}
	}
	if rel := kernelRelease(p); rel != "" {
		if data, err := p.ReadFile("/boot/config-" + rel); err == nil && strings.Contains(string(data), "\nCONFIG_SECCOMP=y") {
			r.Detail = "CONFIG_SECCOMP=y in /boot/config-" + rel
			return r
		}
	}
	r.Level, r.Detail = Warn, "kernel seccomp support not found: pods asking for RuntimeDefault or Localhost profiles will fail"
	r.Fix = "boot a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y"
	return r
}

func checkUserNS(p Probes) Result {
	r := Result{Name: "user namespaces"}
	data, err := p.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil {
		r.Level, r.Detail = Warn, fmt.Sprintf("read /proc/sys/user/max_user_namespaces: %v", err)
		r.Fix = "boot a kernel with CONFIG_USER_NS=y (needed for pods with hostUsers: false)"
		return r
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n <= 0 {
		r.Level, r.Detail = Warn, fmt.Sprintf("max_user_namespaces is %q: pods with hostUsers: false cannot run", strings.TrimSpace(string(data)))
		r.Fix = "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d)"
		return r
	}
	r.Detail = fmt.Sprintf("max_user_namespaces %d", n)
	return r
}

func checkIDMap(cfg config.Config, p Probes) Result {
	r := Result{Name: "idmapped mounts"}
	rel := kernelRelease(p)
	v, ok := majorMinor(rel)
	if !ok {
		r.Level, r.Detail = Warn, fmt.Sprintf("cannot tell the kernel version from %q", rel)
		r.Fix = "check that the kernel is 5.12 or later for user-namespaced pods"
		return r
	}
	switch {
	case less(v, [2]int{5, 12}):
		r.Level, r.Detail = Warn, fmt.Sprintf("kernel %s has no idmapped mounts (5.12+): pods with hostUsers: false cannot run", rel)
		r.Fix = "upgrade the kernel to 5.12 or later"
	case cfg.Snapshotter == "overlayfs" && less(v, [2]int{5, 19}):
		r.Level, r.Detail = Warn, fmt.Sprintf("kernel %s: overlayfs supports idmapped layers from 5.19 only", rel)
		r.Fix = "upgrade the kernel to 5.19 or later for user-namespaced pods on overlayfs"
	default:
		r.Detail = fmt.Sprintf("kernel %s supports them", rel)
	}
	return r
}

const oomScoreAdjPath = "/proc/self/oom_score_adj"

func checkOOMScoreAdj(p Probes) Result {
	r := Result{Name: "oom_score_adj"}
	data, err := p.ReadFile(oomScoreAdjPath)
	if err != nil {
		r.Level, r.Detail, r.Fix = Warn, fmt.Sprintf("read %s: %v", oomScoreAdjPath, err), "run on a Linux kernel with /proc mounted"
		return r
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		r.Level, r.Detail, r.Fix = Warn, fmt.Sprintf("%s holds %q", oomScoreAdjPath, strings.TrimSpace(string(data))), "check /proc"
		return r
	}
	if cur <= -1000 {
		r.Detail = "already at -1000: nothing lower to ask for"
		return r
	}
	// Lowering needs CAP_SYS_RESOURCE; writing is the only reliable test
	// (containers and some VMs drop the capability without telling).
	if err := p.WriteFile(oomScoreAdjPath, []byte(strconv.Itoa(cur-1))); err != nil {
		r.Level = Warn
		r.Detail = fmt.Sprintf("cannot lower it below %d (%v): crishim raises lower values that pods ask for to %d", cur, err, cur)
		r.Fix = "run crishim with CAP_SYS_RESOURCE (as root outside a container) so that critical pods keep their OOM protection"
		return r
	}
	_ = p.WriteFile(oomScoreAdjPath, []byte(strconv.Itoa(cur)))
	r.Detail = fmt.Sprintf("can be lowered (currently %d)", cur)
	return r
}

func checkSocketDir(cfg config.Config, p Probes) Result {
	r := Result{Name: "socket directory"}
	dir := filepath.Dir(cfg.SocketPath())
	// crishim creates missing directories, so the nearest existing one
	// is what must be writable.
	existing := dir
	for !p.Exists(existing) && existing != "/" {
		existing = filepath.Dir(existing)
	}
	if err := p.Writable(existing); err != nil {
		r.Level = Fail
		r.Detail = fmt.Sprintf("%s is not writable: %v", existing, err)
		if errors.Is(err, fs.ErrPermission) {
			r.Fix = "run crishim as root, or set listen to a unix socket in a writable directory"
		} else {
			r.Fix = "set listen to a unix socket in a writable directory"
		}
		return r
	}
	if existing == dir {
		r.Detail = fmt.Sprintf("%s is writable", dir)
	} else {
		r.Detail = fmt.Sprintf("%s will be created in %s, which is writable", dir, existing)
	}
	return r
}

// majorMinor parses the leading "X.Y" of a version or kernel release.
func majorMinor(s string) ([2]int, bool) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return [2]int{}, false
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return [2]int{}, false
	}
	minorDigits := parts[1]
	for i, c := range minorDigits {
		if c < '0' || c > '9' {
			minorDigits = minorDigits[:i]
			break
		}
	}
	minor, err := strconv.Atoi(minorDigits)
	if err != nil {
		return [2]int{}, false
	}
	return [2]int{major, minor}, true
}

func less(a, b [2]int) bool { return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1]) }
