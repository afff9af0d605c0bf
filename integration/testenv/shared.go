//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Shared is one Env for the tests of a package that drive a real
// containerd directly (container, image, sandbox, lifecycle and the
// internal packages eventsub and userdb): the first test that asks sets it
// up, and Main tears it down after the package's tests.
// Only those packages' _test.go files use it.
type Shared struct {
	once sync.Once
	env  *Env
	err  error
}

// Env returns the environment, set up on first use. A test that needs it
// fails, never skips, when it cannot be had: `make test` runs as root on
// a machine with the packages `make deps` installs.
func (s *Shared) Env(t testing.TB) *Env {
	t.Helper()
	s.once.Do(func() {
		// The daemons die with the OS thread that started them
		// (Pdeathsig), and Go ends a thread whose goroutine exits while
		// locked to it, as network namespace code in the tests' own
		// process does. So they are started from a thread kept for the
		// life of the test binary.
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			s.env, s.err = setupShared()
			close(done)
			select {}
		}()
		<-done
	})
	if s.err != nil {
		t.Fatalf("test environment (private containerd and registry): %v", s.err)
	}
	return s.env
}

func setupShared() (*Env, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("these tests run containers and need root: run `make test` as root")
	}
	if err := RequireBinaries(); err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	return Setup(root, false)
}

// Main runs the package's tests (m.Run), then tears down the environment
// if a test set it up. It returns the exit code for os.Exit.
func (s *Shared) Main(m *testing.M) int {
	code := m.Run()
	if s.env == nil {
		return code
	}
	keep := code != 0
	if err := s.env.Teardown(keep); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: teardown: %v\n", err)
		code, keep = 1, true
	}
	if keep {
		fmt.Fprintf(os.Stderr, "testenv: logs kept in %s\n", s.env.LogDir)
	}
	return code
}

// RepoRoot is the directory holding go.mod, found upwards from the
// working directory (a package's directory under go test).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
