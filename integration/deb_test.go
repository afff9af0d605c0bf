//go:build linux

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// TestDebianPackage builds the .deb the way `make deb` does, installs it
// with dpkg, runs the installed crishim the way the installed units would
// (plain and socket-activated, with sd_notify), and purges it again.
// Systemd is not PID 1 on the CI machines, so the unit's ExecStart runs
// directly; only the state, socket and containerd are redirected into the
// test environment.
func TestDebianPackage(t *testing.T) {
	t.Parallel()
	e := needEnv(t)
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not found: not a Debian machine")
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs here: installing the package would enable and start crishim.service")
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "crishim").Output(); strings.Contains(string(out), "installed") {
		t.Skip("a crishim package is installed on this machine: not replacing it")
	}

	dir, err := os.MkdirTemp(e.Dir, "deb-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "crishim")
	if err := testenv.BuildCrishim(e.RepoRoot, bin, false); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(e.RepoRoot, "hack/build-deb.sh"), bin, dir, "0.0.0+it").CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, out)
	}
	deb := strings.TrimSpace(string(out))
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("build-deb.sh printed %q, want the .deb path", out)
	}

	if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "-P", "crishim").CombinedOutput(); err != nil {
			t.Errorf("dpkg -P crishim: %v\n%s", err, out)
		}
		for _, gone := range []string{"/usr/bin/crishim", "/etc/crishim/config.toml", "/lib/systemd/system/crishim.service"} {
			if _, err := os.Stat(gone); err == nil {
				t.Errorf("%s is still there after dpkg -P", gone)
			}
		}
	})

	if out, err := exec.Command("/usr/bin/crishim", "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "crishim ") {
		t.Fatalf("installed crishim version: %v: %s", err, out)
	}
	if conf, err := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", "crishim").Output(); err != nil || !strings.Contains(string(conf), "/etc/crishim/config.toml") {
		t.Errorf("conffiles = %q, %v; want /etc/crishim/config.toml", conf, err)
	}
	doc, err := os.ReadFile("/usr/share/doc/crishim/kubelet.md")
	if err != nil || !strings.Contains(string(doc), "--container-runtime-endpoint=unix:///run/crishim/crishim.sock") {
		t.Errorf("kubelet.md lacks the endpoint flag (%v)", err)
	}
	unit := readUnit(t, "/lib/systemd/system/crishim.service")
	for key, want := range map[string]string{"Type": "notify", "KillMode": "process", "Delegate": "yes", "Restart": "always"} {
		if unit[key] != want {
			t.Errorf("crishim.service %s=%q, want %q", key, unit[key], want)
		}
	}
	socketUnit := readUnit(t, "/lib/systemd/system/crishim.socket")
	if socketUnit["ListenStream"] != "/run/crishim/crishim.sock" || socketUnit["SocketMode"] != "0660" {
		t.Errorf("crishim.socket: %v", socketUnit)
	}
	execStart := strings.Fields(unit["ExecStart"])
	if len(execStart) == 0 || execStart[0] != "/usr/bin/crishim" {
		t.Fatalf("ExecStart = %q", unit["ExecStart"])
	}

	// Everything else comes from the installed /etc/crishim/config.toml.
	overrides := []string{
		"--containerd-address", e.Containerd.Address,
		"--containerd-namespace", "crishim-it-deb",
		"--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"),
		"--cni-conf-dir", e.Network.ConfDir,
	}
	t.Run("ExecStart", func(t *testing.T) {
		sock := filepath.Join(dir, "plain.sock")
		args := slices.Concat(execStart[1:], overrides, []string{"--listen", "unix://" + sock})
		notify := listenNotify(t, filepath.Join(dir, "notify.sock"))
		d := startInstalled(t, filepath.Join(e.LogDir, "crishim-deb.log"), execStart[0], args, []string{"NOTIFY_SOCKET=" + notify.LocalAddr().String()}, nil)
		if msg := readNotify(t, notify); msg != "READY=1" {
			t.Errorf("sd_notify sent %q first, want READY=1", msg)
		}
		answersVersion(t, sock)
		d.stop(t)
		if msg := readNotify(t, notify); msg != "STOPPING=1" {
			t.Errorf("sd_notify sent %q on SIGTERM, want STOPPING=1", msg)
		}
	})
	t.Run("SocketActivation", func(t *testing.T) {
		// What crishim.socket does: systemd listens and passes the socket as fd 3.
		sock := filepath.Join(dir, "activated.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		lf, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		defer lf.Close()
		unused := filepath.Join(dir, "not-created.sock")
		args := slices.Concat(execStart[1:], overrides, []string{"--listen", "unix://" + unused})
		// LISTEN_PID must be the daemon's own pid: the shell's, kept by exec.
		shArgs := append([]string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, execStart[0]}, args...)
		d := startInstalled(t, filepath.Join(e.LogDir, "crishim-deb.log"), "/bin/sh", shArgs, nil, []*os.File{lf})
		answersVersion(t, sock)
		if _, err := os.Stat(unused); err == nil {
			t.Errorf("socket-activated crishim created its own socket %s", unused)
		}
		d.stop(t)
		// The socket is systemd's: crishim must not remove it on exit.
		if _, err := os.Stat(sock); err != nil {
			t.Errorf("activated socket gone after crishim exited: %v", err)
		}
	})
}

// readUnit returns a unit file's Key=Value lines (the last one wins).
func readUnit(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	return keys
}

type installedDaemon struct {
	cmd     *exec.Cmd
	done    chan error
	stopped bool
}

func startInstalled(t *testing.T, logPath, name string, args, env []string, files []*os.File) *installedDaemon {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s: %s %s\n", t.Name(), name, strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = files
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &installedDaemon{cmd: cmd, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if !d.stopped {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

func (d *installedDaemon) stop(t *testing.T) {
	t.Helper()
	d.stopped = true
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("crishim exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Fatal("crishim did not exit within 20s of SIGTERM")
	}
}

func answersVersion(t *testing.T, sock string) {
	t.Helper()
	conn, err := testenv.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := rt.Version(ctx, &runtime.VersionRequest{})
		cancel()
		if err == nil {
			if v.RuntimeName != "crishim" {
				t.Errorf("Version: runtime %q", v.RuntimeName)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("installed crishim did not answer Version on %s: %v", sock, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func listenNotify(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := c.SetReadDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	return strings.TrimSpace(string(buf[:n]))
}
