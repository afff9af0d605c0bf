//go:build linux

// Package testenv is the machinery behind crishim's end-to-end tests: a
// private containerd, a local registry holding images built from Debian's
// busybox-static, a CNI network of its own, and crishim itself, all under
// one temporary directory that is removed afterwards.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/crishim/crishim/internal/stack"
)

// Namespace is the containerd namespace crishim runs in during the tests.
const Namespace = "crishim-it"

// Env is one test run's environment.
type Env struct {
	Dir      string
	RepoRoot string
	LogDir   string

	Containerd        *Containerd
	Registry          *Registry
	Network           *Network
	RegistryConfigDir string
	CrishimRoot       string
	CrishimState      string

	// Image references, all served by Registry.
	BusyboxImage    string // busybox, Cmd ["sh"]
	BusyboxID       string
	StopSignalImage string // busybox with STOPSIGNAL SIGUSR1
	PullTestImage   string // busybox with a label: same files, its own ID, safe to remove
	PullTestID      string
	PauseImage      string // the project's pause, by the registry's host:port (plain HTTP)
	PauseImageID    string

	race bool

	pauseMu sync.Mutex

	crishimOnce sync.Once
	crishim     *Crishim
	crishimErr  error
}

// Setup builds everything but crishim (see Crishim): containerd, the
// registry with the test images, the CNI and registry configuration.
func Setup(repoRoot string, race bool) (_ *Env, retErr error) {
	if err := os.MkdirAll("/var/tmp", 0o1777); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/var/tmp", "crishim-it-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, RepoRoot: repoRoot, LogDir: filepath.Join(dir, "logs"), race: race}
	defer func() {
		if retErr != nil {
			if err := e.Teardown(true); err != nil {
				retErr = fmt.Errorf("%w\n(teardown: %v)", retErr, err)
			}
			retErr = fmt.Errorf("%w\n(logs kept in %s)", retErr, e.LogDir)
		}
	}()
	if err := os.MkdirAll(e.LogDir, 0o755); err != nil {
		return nil, err
	}
	e.CrishimRoot = filepath.Join(dir, "crishim", "root")
	e.CrishimState = filepath.Join(dir, "crishim", "state")

	if e.Containerd, err = StartContainerd(filepath.Join(dir, "containerd"), filepath.Join(e.LogDir, "containerd.log")); err != nil {
		return nil, err
	}
	if e.Registry, err = StartRegistry(filepath.Join(dir, "registry"), filepath.Join(e.LogDir, "registry.log")); err != nil {
		return nil, err
	}
	if err := e.pushImages(); err != nil {
		return nil, err
	}
	e.RegistryConfigDir = filepath.Join(dir, "certs.d")
	if err := WriteRegistryHosts(e.RegistryConfigDir, e.Registry.Host, RegistryAlias); err != nil {
		return nil, err
	}
	if e.Network, err = WriteNetwork(filepath.Join(dir, "cni")); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Env) pushImages() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	push := func(repo, tag string, opts ImageOptions) (string, *Image, error) {
		img, err := BusyboxImage(opts)
		if err != nil {
			return "", nil, err
		}
		if err := e.Registry.Push(ctx, repo, tag, img); err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("%s/%s:%s", RegistryAlias, repo, tag), img, nil
	}
	var img *Image
	var err error
	if e.BusyboxImage, img, err = push("busybox", "latest", ImageOptions{}); err != nil {
		return err
	}
	e.BusyboxID = img.ID()
	if e.StopSignalImage, _, err = push("busybox", "stopsignal", ImageOptions{StopSignal: "SIGUSR1"}); err != nil {
		return err
	}
	if e.PullTestImage, img, err = push("pulltest/busybox", "v1", ImageOptions{Labels: map[string]string{"io.crishim.test": "pull"}}); err != nil {
		return err
	}
	e.PullTestID = img.ID()
	return nil
}

// Crishim builds and starts crishim on first use; every later call returns
// the same daemon, or the same error.
func (e *Env) Crishim() (*Crishim, error) {
	e.crishimOnce.Do(func() {
		e.crishim, e.crishimErr = e.startCrishim()
	})
	return e.crishim, e.crishimErr
}

func (e *Env) startCrishim() (*Crishim, error) {
	bin := filepath.Join(e.Dir, "bin", "crishim")
	if err := BuildCrishim(e.RepoRoot, bin, e.race); err != nil {
		return nil, err
	}
	if err := e.PushPauseImage(); err != nil {
		return nil, err
	}
	for _, d := range []string{e.CrishimRoot, e.CrishimState} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return StartCrishim(CrishimConfig{
		Binary:              bin,
		Dir:                 filepath.Join(e.Dir, "crishim"),
		ContainerdAddress:   e.Containerd.Address,
		ContainerdNamespace: Namespace,
		Root:                e.CrishimRoot,
		State:               e.CrishimState,
		CNIConfDir:          e.Network.ConfDir,
		RegistryConfigDir:   e.RegistryConfigDir,
		LogPath:             filepath.Join(e.LogDir, "crishim.log"),
	})
}

// PushPauseImage pushes an image of the built pause program (make pause)
// to the registry and sets PauseImage and PauseImageID; once is enough.
func (e *Env) PushPauseImage() error {
	e.pauseMu.Lock()
	defer e.pauseMu.Unlock()
	if e.PauseImage != "" {
		return nil
	}
	bin, err := BuildPause(e.RepoRoot)
	if err != nil {
		return err
	}
	pause, err := PauseImage(bin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Registry.Push(ctx, "crishim/pause", "it", pause); err != nil {
		return err
	}
	e.PauseImage, e.PauseImageID = e.Registry.Host+"/crishim/pause:it", pause.ID()
	return nil
}

// CrishimLog is the path of crishim's log.
func (e *Env) CrishimLog() string { return filepath.Join(e.LogDir, "crishim.log") }

// Leaks lists what pods and containers left behind in the machine: tasks,
// containers and container snapshots in crishim's namespace, mounts under
// the test directory (netns and shm bind mounts, rootfs), and the test
// network's IP allocations, bridge ports (veths) and nat rules. Only
// meaningful when no pod exists.
func (e *Env) Leaks() ([]string, error) {
	return stack.Leaks(e.Containerd, Namespace, e.Network, e.Dir)
}

// Teardown stops everything and removes the test directory. With
// keepLogs the log directory stays for a post-mortem.
func (e *Env) Teardown(keepLogs bool) error {
	var errs []error
	if e.crishim != nil {
		if err := e.crishim.Stop(); err != nil {
			errs = append(errs, err)
		}
		if e.race {
			if data, err := os.ReadFile(e.CrishimLog()); err == nil && strings.Contains(string(data), "WARNING: DATA RACE") {
				errs = append(errs, fmt.Errorf("crishim's log reports a data race (see %s)", e.CrishimLog()))
				keepLogs = true
			}
		}
	}
	if e.Containerd != nil {
		if err := e.Containerd.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.Registry != nil {
		if err := e.Registry.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.Network != nil {
		if err := e.Network.Cleanup(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := stack.UnmountAll(e.Dir); err != nil {
		errs = append(errs, err)
	}
	entries, err := os.ReadDir(e.Dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ent := range entries {
		if keepLogs && ent.Name() == "logs" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(e.Dir, ent.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if !keepLogs {
		if err := os.Remove(e.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
