//go:build linux

package stack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon is a long-running child process whose output goes to a log file.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

func startDaemon(name, logPath string, argv ...string) (*daemon, error) {
	return startDaemonEnv(name, logPath, nil, argv...)
}

// startDaemonEnv is startDaemon with extra environment variables.
func startDaemonEnv(name, logPath string, env []string, argv ...string) (*daemon, error) {
	return startDaemonFiles(name, logPath, env, nil, argv...)
}

// startDaemonFiles is startDaemonEnv with files passed as fd 3 onwards.
func startDaemonFiles(name, logPath string, env []string, files []*os.File, argv ...string) (*daemon, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.ExtraFiles = files
	// A group of its own keeps a Ctrl-C aimed at `go test` from killing the
	// daemons before the harness has cleaned up behind them, and a parent
	// death signal stops them if the test binary itself is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// exited reports the daemon's exit as an error, or nil while it runs.
func (d *daemon) exited() error {
	select {
	case <-d.done:
		return fmt.Errorf("%s exited: %v; log tail:\n%s", d.name, d.waitErr, Tail(d.logPath, 30))
	default:
		return nil
	}
}

// stop sends SIGTERM and escalates to SIGKILL after grace.
func (d *daemon) stop(grace time.Duration) error {
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(grace):
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", d.name, grace)
}

// Tail returns the last n lines of a file, for failure messages.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// poll calls cond until it returns true or an error, or the deadline passes.
func poll(timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("%s: not done after %s: %w", what, timeout, last)
			}
			return fmt.Errorf("%s: not done after %s", what, timeout)
		}
		time.Sleep(interval)
	}
}

// ProcessesWithArgs returns the PIDs of processes whose executable base name
// is exe and whose argument list contains flag followed by value.
func ProcessesWithArgs(exe, flag, value string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) != exe {
			continue
		}
		for i := 1; i < len(args); i++ {
			if args[i] == flag && i+1 < len(args) && args[i+1] == value || args[i] == flag+"="+value {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// MountsUnder lists mount points at or below dir, deepest first.
func MountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	return mounts, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnmountAll detaches every mount under dir; it reports what was left.
func UnmountAll(dir string) error {
	mounts, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range mounts {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// run executes a command and returns its combined output in the error.
func run(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Daemon is a long-running program a test suite starts (a kubelet, etcd,
// an API server), logging to a file, stopped with SIGTERM then SIGKILL and
// killed with the test binary.
type Daemon struct{ d *daemon }

// StartDaemon starts argv with env added to the environment.
func StartDaemon(name, logPath string, env []string, argv ...string) (*Daemon, error) {
	d, err := startDaemonEnv(name, logPath, env, argv...)
	if err != nil {
		return nil, err
	}
	return &Daemon{d}, nil
}

// Exited reports the daemon's exit, with the tail of its log, or nil while
// it runs.
func (d *Daemon) Exited() error { return d.d.exited() }

// Stop sends SIGTERM and SIGKILL after grace.
func (d *Daemon) Stop(grace time.Duration) error { return d.d.stop(grace) }

// Pid is the daemon's process ID.
func (d *Daemon) Pid() int { return d.d.cmd.Process.Pid }

// Poll calls cond every interval until it returns true, or until timeout,
// when the last error cond returned is reported.
func Poll(timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	return poll(timeout, interval, what, cond)
}

// RegistryAlias is a made-up registry name that the hosts.toml directory
// maps to the local registry, so tests pull the way a node pulls through
// a mirror.
const RegistryAlias = "registry.crishim.test"

// RequireBinaries reports the programs the suite needs and cannot find.
func RequireBinaries() error {
	var missing []string
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "iptables", "ip", "gcc"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	for _, path := range []string{"/usr/bin/docker-registry", BusyboxBinary, CNIBinDir + "/bridge", CNIBinDir + "/host-local", CNIBinDir + "/portmap"} {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, path)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s (install: apt-get install containerd runc containernetworking-plugins docker-registry busybox-static iptables iproute2 gcc libc6-dev; or run `make deps`)", strings.Join(missing, ", "))
	}
	return nil
}
