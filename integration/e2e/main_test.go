//go:build linux

// Package e2e runs crishim under real Kubernetes components built from
// the Kubernetes release the tools module pins (hack/build-k8s.sh): a
// standalone kubelet with static pods (the node suite) and a one-node
// cluster of etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and a kubelet (the cluster suite). Both run on the integration suite's
// private containerd, registry and CNI network (integration/testenv).
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/crishim/crishim/integration/testenv"
)

var (
	env *testenv.Env
	// k8sBin holds kubelet, kube-apiserver, ..., etcd.
	k8sBin string
	keep   = flag.Bool("keep-logs", false, "keep the logs of the test environment after a successful run")
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: "+format+"\n", a...)
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("the kubelet and crishim need root (run `sudo make test`)")
	}
	if err := testenv.RequireBinaries(); err != nil {
		return fail("%v", err)
	}
	repoRoot, err := filepath.Abs("../..")
	if err != nil {
		return fail("%v", err)
	}
	if k8sBin, err = kubernetesBinaries(repoRoot); err != nil {
		return fail("Kubernetes binaries: %v", err)
	}
	e, err := testenv.Setup(repoRoot, raceEnabled)
	if err != nil {
		return fail("set up the test environment: %v", err)
	}
	env = e
	fmt.Fprintf(os.Stderr, "e2e: environment in %s (bridge %s %s), Kubernetes binaries in %s\n", e.Dir, e.Network.Bridge, e.Network.Subnet, k8sBin)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "e2e: %v: tearing down\n", s)
		restoreHost()
		_ = e.Teardown(true)
		os.Exit(1)
	}()

	code := m.Run()
	restoreHost()
	keepLogs := code != 0 || *keep
	if err := e.Teardown(keepLogs); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: teardown: %v\n", err)
		code = 1
	}
	if keepLogs {
		fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", e.LogDir)
	}
	return code
}

// kubernetesBinaries is $CRISHIM_K8S_BIN when set (make test sets it), else
// what hack/build-k8s.sh builds or finds in its cache.
func kubernetesBinaries(repoRoot string) (string, error) {
	dir := os.Getenv("CRISHIM_K8S_BIN")
	if dir == "" {
		cmd := exec.Command(filepath.Join(repoRoot, "hack", "build-k8s.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("hack/build-k8s.sh: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, b := range []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s missing in %s: %w", b, dir, err)
		}
	}
	return dir, nil
}
