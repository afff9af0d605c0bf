package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// These tests run the real CNI plugins on this machine. They use their own
// bridge and subnet (two bridges with one subnet break routing) and remove
// both afterwards.
const (
	realBridge = "hlpsbn0"
	realSubnet = "10.222.1.0/24"
)

// realCNI is a network manager over the machine's CNI plugins plus, in a
// directory of its own, a plugin that fails every ADD.
func realCNI(t *testing.T, withFailing bool, firstBinDirs ...string) (*Manager, string) {
	t.Helper()
	// No containerd needed: root and the Debian CNI plugins, which
	// `make deps` installs, so these run in `make test`.
	if os.Geteuid() != 0 {
		t.Skip("real CNI test: needs root")
	}
	for _, plugin := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", plugin)); err != nil {
			t.Skipf("real CNI test: %v (install containernetworking-plugins)", err)
		}
	}
	name := fmt.Sprintf("hlpsb-net-%d", os.Getpid())
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", realBridge).Run()
		os.RemoveAll(filepath.Join("/var/lib/cni/networks", name))
	})
	extra := ""
	if withFailing {
		extra = `,{"type": "hlpsb-fail"}`
	}
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [
	  {"type": "bridge", "bridge": %q, "isGateway": true,
	   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
	  {"type": "portmap", "capabilities": {"portMappings": true}}%s]}`, name, realBridge, realSubnet, extra)
	confDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(confDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	failBin := t.TempDir()
	script := `#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}';;
ADD) echo '{"cniVersion":"1.0.0","code":100,"msg":"hlpsb-fail refuses"}'; exit 1;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(failBin, "hlpsb-fail"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	bins := append(firstBinDirs, "/usr/lib/cni", "/opt/cni/bin", failBin)
	m, err := New(Config{ConfDir: confDir, BinDirs: bins, NetNSDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	return m, filepath.Join("/var/lib/cni/networks", name)
}

// allocations lists the IPs host-local holds in dir.
func allocations(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func testPod() *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
		PortMappings: []*runtime.PortMapping{{ContainerPort: 80, HostPort: 18089}},
	}
}

func TestRealSetupTeardownSurvivesLostNetNS(t *testing.T) {
	m, allocDir := realCNI(t, false)
	ctx := context.Background()
	id := "hlpsbnettest1"
	path, err := m.CreateNetNS(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.RemoveNetNS(path) })
	res, err := m.Setup(ctx, id, path, testPod())
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	_, subnet, _ := net.ParseCIDR(realSubnet)
	if !subnet.Contains(net.ParseIP(res.IP)) {
		t.Fatalf("pod IP %q not in %s", res.IP, realSubnet)
	}
	if got := allocations(t, allocDir); len(got) != 1 || got[0] != res.IP {
		t.Fatalf("allocations = %v, want [%s]", got, res.IP)
	}
	out, err := exec.Command("nsenter", "--net="+path, "ip", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("inspect netns: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "lo ") || !strings.Contains(string(out), "127.0.0.1") || !strings.Contains(string(out), res.IP) {
		t.Errorf("netns addresses lack loopback or %s:\n%s", res.IP, out)
	}

	// The namespace vanishes (a reboot, a crash mid-teardown): DEL must
	// still give the address back.
	if err := m.RemoveNetNS(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("netns %s still present: %v", path, err)
	}
	if err := m.Teardown(ctx, id, path, testPod()); err != nil {
		t.Fatalf("Teardown without netns: %v", err)
	}
	if got := allocations(t, allocDir); len(got) != 0 {
		t.Errorf("allocations after teardown = %v", got)
	}
	if err := m.Teardown(ctx, id, path, testPod()); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if err := m.RemoveNetNS(path); err != nil {
		t.Errorf("second RemoveNetNS: %v", err)
	}
}

func TestRealFailedAddLeavesNoAllocation(t *testing.T) {
	m, allocDir := realCNI(t, true)
	id := "hlpsbnettest2"
	path, err := m.CreateNetNS(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.RemoveNetNS(path) })
	_, err = m.Setup(context.Background(), id, path, testPod())
	if err == nil || !strings.Contains(err.Error(), "hlpsb-fail refuses") {
		t.Fatalf("Setup = %v, want the failing plugin's error", err)
	}
	if got := allocations(t, allocDir); len(got) != 0 {
		t.Errorf("allocations after failed ADD = %v", got)
	}
}

// TestRealPortmapRunsOnlyForHostPorts wraps the real portmap plugin to log
// its calls: a pod without host ports must get its IP, an lo that is up,
// and no portmap call; a pod with one must get portmap on ADD and DEL.
func TestRealPortmapRunsOnlyForHostPorts(t *testing.T) {
	wrapDir := t.TempDir()
	callLog := filepath.Join(wrapDir, "calls")
	wrapper := fmt.Sprintf("#!/bin/sh\necho \"$CNI_COMMAND\" >> %s\nexec /usr/lib/cni/portmap\n", callLog)
	if err := os.WriteFile(filepath.Join(wrapDir, "portmap"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	m, allocDir := realCNI(t, false, wrapDir)
	ctx := context.Background()
	calls := func() string {
		data, err := os.ReadFile(callLog)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(string(data)), ",")
	}
	for _, tc := range []struct {
		name      string
		ports     []*runtime.PortMapping
		wantCalls string
	}{
		{"no host ports", []*runtime.PortMapping{{ContainerPort: 80}}, ""},
		{"host port", []*runtime.PortMapping{{ContainerPort: 80, HostPort: 18090}}, "ADD,DEL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(callLog)
			id := "hlpsbnettest3"
			path, err := m.CreateNetNS(id)
			if err != nil {
				t.Fatal(err)
			}
			defer m.RemoveNetNS(path)
			pod := testPod()
			pod.PortMappings = tc.ports
			res, err := m.Setup(ctx, id, path, pod)
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			if got := allocations(t, allocDir); len(got) != 1 || got[0] != res.IP {
				t.Fatalf("allocations = %v, want [%s]", got, res.IP)
			}
			out, err := exec.Command("nsenter", "--net="+path, "ip", "-o", "link", "show", "lo").CombinedOutput()
			if err != nil || !strings.Contains(string(out), ",UP") {
				t.Errorf("lo in the pod is not up: %v: %s", err, out)
			}
			if err := m.Teardown(ctx, id, path, pod); err != nil {
				t.Fatalf("Teardown: %v", err)
			}
			if got := allocations(t, allocDir); len(got) != 0 {
				t.Errorf("allocations after teardown = %v", got)
			}
			if got := calls(); got != tc.wantCalls {
				t.Errorf("portmap calls = %q, want %q", got, tc.wantCalls)
			}
		})
	}
}

// TestRealMissingPluginFailsBeforeAdd names a plugin that is not installed
// at the end of the chain: Setup must refuse before the bridge takes an
// address, since the DEL that would release it fails on the same missing
// plugin.
func TestRealMissingPluginFailsBeforeAdd(t *testing.T) {
	m, allocDir := realCNI(t, false)
	name := fmt.Sprintf("hlpsb-net-%d", os.Getpid())
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [
	  {"type": "bridge", "bridge": %q, "isGateway": true,
	   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]]}},
	  {"type": "hlpsb-not-installed"}]}`, name, realBridge, realSubnet)
	if err := os.WriteFile(filepath.Join(m.cfg.ConfDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	id := "hlpsbnettest4"
	path, err := m.CreateNetNS(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.RemoveNetNS(path) })
	_, err = m.Setup(context.Background(), id, path, testPod())
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "hlpsb-not-installed") {
		t.Errorf("Setup = %v, want FailedPrecondition naming the missing plugin", err)
	}
	if got := allocations(t, allocDir); len(got) != 0 {
		t.Errorf("allocations after a refused ADD = %v", got)
	}
}

// TestRealFailedAddAndDelStillAttached wraps the bridge plugin so that ADD
// does its work and then fails, and DEL fails until the test lets it
// work: Setup must say the pod is still attached (ErrStillAttached), and
// a later Teardown must release the address.
func TestRealFailedAddAndDelStillAttached(t *testing.T) {
	wrapDir := t.TempDir()
	delFails := filepath.Join(wrapDir, "del-fails")
	wrapper := fmt.Sprintf(`#!/bin/sh
case "$CNI_COMMAND" in
ADD) /usr/lib/cni/bridge >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"wrapped ADD fails"}'; exit 1;;
DEL) if [ -e %s ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"wrapped DEL fails"}'; exit 1; fi;;
esac
exec /usr/lib/cni/bridge
`, delFails)
	if err := os.WriteFile(filepath.Join(wrapDir, "bridge"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(delFails, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, allocDir := realCNI(t, false, wrapDir)
	ctx := context.Background()
	id := "hlpsbnettest5"
	path, err := m.CreateNetNS(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.RemoveNetNS(path) })
	pod := testPod()
	_, err = m.Setup(ctx, id, path, pod)
	if !errors.Is(err, ErrStillAttached) || !strings.Contains(err.Error(), "wrapped ADD fails") {
		t.Fatalf("Setup = %v, want the ADD error marked ErrStillAttached", err)
	}
	if got := allocations(t, allocDir); len(got) != 1 {
		t.Fatalf("allocations after ADD and DEL failed = %v, want the one ADD took", got)
	}
	if err := os.Remove(delFails); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(ctx, id, path, pod); err != nil {
		t.Fatalf("Teardown once DEL works: %v", err)
	}
	if got := allocations(t, allocDir); len(got) != 0 {
		t.Errorf("allocations after Teardown = %v", got)
	}
}
