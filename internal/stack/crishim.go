//go:build linux

package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PauseSource and PauseBinary are, relative to the repository root, the
// project's pause program and where the build puts it for go:embed.
const (
	PauseSource = "internal/image/pausebin/pause.c"
	PauseBinary = "internal/image/pausebin/pause"
)

// BuildPause compiles the pause program unless an up-to-date build exists.
func BuildPause(repoRoot string) (string, error) {
	out := filepath.Join(repoRoot, PauseBinary)
	src, err := os.Stat(filepath.Join(repoRoot, PauseSource))
	if err != nil {
		return "", fmt.Errorf("pause source: %w", err)
	}
	if bin, err := os.Stat(out); err == nil && !bin.ModTime().Before(src.ModTime()) {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	if _, err := run("gcc", "-static", "-Os", "-s", "-o", out, filepath.Join(repoRoot, PauseSource)); err != nil {
		return "", fmt.Errorf("compile pause: %w", err)
	}
	return out, nil
}

// BuildCrishim builds ./cmd/crishim into out, with the race detector when
// race is set, so that a data race in the daemon shows up in its log.
func BuildCrishim(repoRoot, out string, race bool) error {
	if _, err := BuildPause(repoRoot); err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/crishim")
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = repoRoot
	cmd.Env = os.Environ()
	if !race {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if outp, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, outp)
	}
	return nil
}

// goTool finds the go command even when PATH lacks /usr/local/go/bin.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}

// CrishimConfig is how a test run starts crishim.
type CrishimConfig struct {
	Binary              string
	Dir                 string // config file and socket live here
	ContainerdAddress   string
	ContainerdNamespace string
	Root, State         string
	CNIConfDir          string
	RegistryConfigDir   string
	LogPath             string
	ExtraArgs           []string
}

// Crishim is a running `crishim serve`.
type Crishim struct {
	cfg    CrishimConfig
	Socket string

	mu sync.Mutex
	d  *daemon
	// env is added to crishim's environment and extra to its command line
	// at the next start.
	env, extra []string
	// held is the CRI socket while the harness listens on it in
	// crishim's place (HoldSocket).
	held *os.File
}

// StartCrishim starts crishim and waits until it answers Version.
func StartCrishim(cfg CrishimConfig) (*Crishim, error) {
	// An empty config file of its own keeps a machine's
	// /etc/crishim/config.toml out of the test run.
	confPath := filepath.Join(cfg.Dir, "crishim.toml")
	if err := os.WriteFile(confPath, nil, 0o644); err != nil {
		return nil, err
	}
	c := &Crishim{cfg: cfg, Socket: filepath.Join(cfg.Dir, "crishim.sock")}
	if err := c.start(); err != nil {
		return nil, err
	}
	return c, nil
}

// Args is the command line crishim runs with.
func (c *Crishim) Args() []string {
	args := []string{c.cfg.Binary, "serve",
		"--config", filepath.Join(c.cfg.Dir, "crishim.toml"),
		"--listen", "unix://" + c.Socket,
		"--containerd-address", c.cfg.ContainerdAddress,
		"--containerd-namespace", c.cfg.ContainerdNamespace,
		"--root", c.cfg.Root,
		"--state", c.cfg.State,
		"--cni-conf-dir", c.cfg.CNIConfDir,
		"--cni-bin-dir", CNIBinDir,
		"--registry-config-dir", c.cfg.RegistryConfigDir,
		"--log-level", "debug",
	}
	args = append(args, c.cfg.ExtraArgs...)
	return append(args, c.extra...)
}

// SetExtraArgs sets further command-line arguments for the next start;
// none clears them.
func (c *Crishim) SetExtraArgs(args ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.extra = args
}

func (c *Crishim) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(logFile(c.cfg.LogPath), "=== harness: starting %s\n", strings.Join(c.Args(), " "))
	if len(c.env) > 0 {
		fmt.Fprintf(logFile(c.cfg.LogPath), "=== harness: environment %s\n", strings.Join(c.env, " "))
	}
	argv, files := c.Args(), []*os.File(nil)
	if c.held != nil {
		// As systemd passes crishim.socket: fd 3, and LISTEN_PID naming the
		// daemon itself, which the shell becomes by exec.
		argv = append([]string{"/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`}, argv...)
		files = []*os.File{c.held}
		fmt.Fprintf(logFile(c.cfg.LogPath), "=== harness: the socket is passed as fd 3 (socket activation)\n")
	}
	d, err := startDaemonFiles("crishim", c.cfg.LogPath, c.env, files, argv...)
	if err != nil {
		return err
	}
	c.d = d
	conn, err := Dial(c.Socket)
	if err != nil {
		_ = d.stop(5 * time.Second)
		return err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	err = poll(60*time.Second, 50*time.Millisecond, "crishim to answer Version on "+c.Socket, func() (bool, error) {
		if err := d.exited(); err != nil {
			return false, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := rt.Version(ctx, &runtime.VersionRequest{})
		return err == nil, err
	})
	if err != nil {
		_ = d.stop(5 * time.Second)
		return fmt.Errorf("%w\ncrishim log tail:\n%s", err, Tail(c.cfg.LogPath, 40))
	}
	return nil
}

// Stop stops crishim with SIGTERM; it must exit within the grace period.
func (c *Crishim) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d == nil {
		return nil
	}
	err := c.d.stop(20 * time.Second)
	if err == nil && c.d.waitErr != nil {
		err = fmt.Errorf("crishim exited with %v after SIGTERM", c.d.waitErr)
	}
	c.d = nil
	return err
}

// HoldSocket makes the harness own the CRI socket from the next start on
// and hand it to crishim as systemd's crishim.socket does: across a
// restart, clients' connections then wait in the socket's backlog instead
// of finding no socket. Call it while crishim is stopped.
func (c *Crishim) HoldSocket() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d != nil {
		return errors.New("crishim is running: stop it before taking its socket")
	}
	if c.held != nil {
		return nil
	}
	if err := os.Remove(c.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: c.Socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Socket, err)
	}
	// The file is all that is kept: the socket lives as long as it.
	f, err := l.File()
	l.SetUnlinkOnClose(false)
	l.Close()
	if err != nil {
		return err
	}
	c.held = f
	return nil
}

// ReleaseSocket gives the socket back to crishim from its next start on,
// which then creates its own. Call it while crishim is stopped.
func (c *Crishim) ReleaseSocket() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d != nil {
		return errors.New("crishim is running: stop it before giving its socket back")
	}
	if c.held == nil {
		return nil
	}
	err := c.held.Close()
	c.held = nil
	return err
}

// Restart stops crishim and starts it again with the same arguments.
func (c *Crishim) Restart() error {
	if err := c.Stop(); err != nil {
		return err
	}
	return c.start()
}

// SetEnv sets the extra environment (KEY=value) of the next start, e.g.
// fault points; none clears it.
func (c *Crishim) SetEnv(env ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.env = env
}

// Start starts a stopped crishim and waits until it answers.
func (c *Crishim) Start() error {
	c.mu.Lock()
	running := c.d != nil
	c.mu.Unlock()
	if running {
		return errors.New("crishim is already running")
	}
	return c.start()
}

// Kill kills crishim with SIGKILL, as a crash would, and reaps it.
func (c *Crishim) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d == nil {
		return errors.New("crishim is not running")
	}
	_ = c.d.cmd.Process.Kill()
	<-c.d.done
	c.d = nil
	return nil
}

// WaitExit waits for crishim to exit by itself (a fault point) and returns
// its exit code.
func (c *Crishim) WaitExit(timeout time.Duration) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d == nil {
		return 0, errors.New("crishim is not running")
	}
	select {
	case <-c.d.done:
	case <-time.After(timeout):
		return 0, fmt.Errorf("crishim still runs after %s", timeout)
	}
	code := c.d.cmd.ProcessState.ExitCode()
	c.d = nil
	return code, nil
}

// Pid is the running crishim's process ID (0 when stopped).
func (c *Crishim) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d == nil {
		return 0
	}
	return c.d.cmd.Process.Pid
}

// Alive reports an error when crishim has exited behind the tests' back.
func (c *Crishim) Alive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d == nil {
		return errors.New("crishim is stopped")
	}
	return c.d.exited()
}

// LogPath is crishim's log file (all runs appended).
func (c *Crishim) LogPath() string { return c.cfg.LogPath }

// Binary is the crishim program this daemon runs, for tests that start
// crishims of their own.
func (c *Crishim) Binary() string { return c.cfg.Binary }

// Dial connects to a CRI endpoint on a unix socket. The connection is lazy
// and survives restarts of the server behind it.
func Dial(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
}

type appendFile struct{ path string }

func (a appendFile) Write(p []byte) (int, error) {
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Write(p)
}

func logFile(path string) appendFile { return appendFile{path} }
