//go:build linux

// Package integration drives a real crishim, on a real containerd, runc and
// CNI plugins, through the CRI gRPC API. See testenv for the environment.
package integration

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/crishim/crishim/integration/testenv"
)

// env is nil when the suite cannot run here (not root).
var env *testenv.Env

// keep leaves the test directory's logs in place even on success.
var keep = flag.Bool("keep-logs", false, "keep the logs of the test environment after a successful run")

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration: FAIL: the suite starts containerd and creates network namespaces, which needs root (run `sudo make test`)")
		return 1
	}
	if err := testenv.RequireBinaries(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: FAIL: %v\n", err)
		return 1
	}
	repoRoot, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: FAIL: %v\n", err)
		return 1
	}
	e, err := testenv.Setup(repoRoot, raceEnabled)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: FAIL: set up the test environment: %v\n", err)
		return 1
	}
	env = e
	fmt.Fprintf(os.Stderr, "integration: environment in %s (containerd %s, registry %s, bridge %s %s)\n",
		e.Dir, e.Containerd.Address, e.Registry.Host, e.Network.Bridge, e.Network.Subnet)

	// An interrupted run still stops its daemons and deletes its bridge.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "integration: %v: tearing down\n", s)
		if err := e.Teardown(true); err != nil {
			fmt.Fprintf(os.Stderr, "integration: teardown: %v\n", err)
		}
		os.Exit(1)
	}()

	code := m.Run()
	signal.Stop(sigs)

	if code == 0 {
		// Every test removed what it made; anything left is a leak in crishim.
		if _, err := e.Crishim(); err == nil {
			leaks, err := e.Leaks()
			if err != nil {
				fmt.Fprintf(os.Stderr, "integration: FAIL: leak check: %v\n", err)
				code = 1
			} else if len(leaks) > 0 {
				fmt.Fprintf(os.Stderr, "integration: FAIL: left behind after the suite:\n  %s\n", strings.Join(leaks, "\n  "))
				code = 1
			}
		}
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "integration: crishim log tail (%s):\n%s\n", e.CrishimLog(), testenv.Tail(e.CrishimLog(), 60))
	}
	if err := e.Teardown(code != 0 || *keep); err != nil {
		fmt.Fprintf(os.Stderr, "integration: FAIL: teardown: %v\n", err)
		code = 1
	}
	if code != 0 || *keep {
		fmt.Fprintf(os.Stderr, "integration: logs kept in %s\n", e.LogDir)
	}
	return code
}

// needEnv returns the environment; a test without one fails.
func needEnv(t *testing.T) *testenv.Env {
	t.Helper()
	if env == nil {
		t.Fatal("no test environment: the suite needs root")
	}
	return env
}
