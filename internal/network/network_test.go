package network

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPortMappingsKeepsHostPortsOnly(t *testing.T) {
	got := portMappings([]*runtime.PortMapping{
		{ContainerPort: 80, HostPort: 8080},
		{ContainerPort: 53, HostPort: 5353, Protocol: runtime.Protocol_UDP, HostIp: "127.0.0.1"},
		{ContainerPort: 9000}, // documentation only
		{ContainerPort: 7, HostPort: 7007, Protocol: runtime.Protocol_SCTP},
	})
	want := []gocni.PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
		{HostPort: 7007, ContainerPort: 7, Protocol: "sctp"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mappings %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseQuantity(t *testing.T) {
	for in, want := range map[string]uint64{
		"0": 0, "100": 100, "10k": 10_000, "1M": 1_000_000, "2G": 2_000_000_000,
		"1Ki": 1024, "3Mi": 3 << 20, "1Gi": 1 << 30,
	} {
		got, err := parseQuantity(in)
		if err != nil || got != want {
			t.Errorf("parseQuantity(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1", "1.5M", "10X", "99999999999999999999"} {
		if _, err := parseQuantity(bad); err == nil {
			t.Errorf("parseQuantity(%q) succeeded", bad)
		}
	}
}

func TestBandwidthFromAnnotations(t *testing.T) {
	bw, err := bandwidth(map[string]string{"other": "x"})
	if err != nil || bw != nil {
		t.Fatalf("no bandwidth annotations: got %+v, %v", bw, err)
	}
	bw, err = bandwidth(map[string]string{ingressBandwidthAnnotation: "10M"})
	if err != nil {
		t.Fatal(err)
	}
	if bw.IngressRate != 10_000_000 || bw.IngressBurst == 0 || bw.EgressRate != 0 {
		t.Errorf("ingress only: %+v", bw)
	}
	_, err = bandwidth(map[string]string{egressBandwidthAnnotation: "fast"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad egress annotation: err = %v, want InvalidArgument", err)
	}
}

func TestPodIPsPrefersIPv4OnPodInterfaces(t *testing.T) {
	res := &gocni.Result{Interfaces: map[string]*gocni.Config{
		"lo":       {Sandbox: "/ns", IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("127.0.0.1")}}},
		"hlpsb0":   {IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("10.1.0.1")}}},
		"eth0":     {Sandbox: "/ns", IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("fd00::5")}, {IP: net.ParseIP("10.1.0.5")}}},
		"eth1":     {Sandbox: "/ns", IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("10.2.0.5")}}},
		"vethabcd": {},
	}}
	ip, extra := podIPs(res)
	if ip != "10.1.0.5" {
		t.Errorf("primary IP = %q, want 10.1.0.5", ip)
	}
	if strings.Join(extra, ",") != "10.2.0.5,fd00::5" {
		t.Errorf("additional IPs = %v, want [10.2.0.5 fd00::5]", extra)
	}
	if ip, extra := podIPs(&gocni.Result{Interfaces: map[string]*gocni.Config{"eth0": {}}}); ip != "" || extra != nil {
		t.Errorf("no IPs: got %q %v", ip, extra)
	}
}

// fakePlugins makes executables named like CNI plugins; Ready only checks
// that they exist.
func fakePlugins(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuiltinNetworkWhenConfDirEmpty(t *testing.T) {
	confDir := filepath.Join(t.TempDir(), "net.d") // absent at first
	bins := fakePlugins(t, "bridge", "host-local", "portmap", "loopback")
	m, err := New(Config{ConfDir: confDir, BinDirs: []string{bins}, NetNSDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready with built-in network and all plugins: %v", err)
	}
	if !m.UsesBuiltin() {
		t.Error("absent conf dir did not select the built-in network")
	}
	nets, err := m.current()
	if err != nil {
		t.Fatal(err)
	}
	if names := networkNames(nets.all); names != "crishim" {
		t.Errorf("networks = %s, want crishim", names)
	}
	if got := pluginTypes(nets.all); got != "bridge,portmap" {
		t.Errorf("built-in chain = %s, want bridge,portmap", got)
	}
	if nets.noHostPorts == nil {
		t.Fatal("no portmap-free chain derived from the built-in network")
	}
	if got := pluginTypes(nets.noHostPorts); got != "bridge" {
		t.Errorf("chain for pods without host ports = %s, want bridge", got)
	}
	src := nets.all.GetConfig().Networks[0].Config.Source
	for _, want := range []string{`"crishim0"`, `10.88.0.0/16`, `"portMappings": true`, `"isGateway": true`, `"ipMasq": true`, `0.0.0.0/0`} {
		if !strings.Contains(src, want) {
			t.Errorf("built-in conflist lacks %s", want)
		}
	}
}

func TestReloadsWhenConfDirChanges(t *testing.T) {
	confDir := t.TempDir()
	bins := fakePlugins(t, "bridge", "host-local", "portmap", "loopback")
	m, err := New(Config{ConfDir: confDir, BinDirs: []string{bins}, NetNSDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	conf := `{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"ptp","ipam":{"type":"static"}}]}`
	if err := os.WriteFile(filepath.Join(confDir, "10-mine.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	err = m.Ready()
	if err == nil || !strings.Contains(err.Error(), "ptp") || !strings.Contains(err.Error(), "static") {
		t.Fatalf("Ready with missing ptp/static plugins = %v, want an error naming them", err)
	}
	if m.UsesBuiltin() {
		t.Error("still on the built-in network after a config appeared")
	}
	nets, _ := m.current()
	if got := networkNames(nets.all); got != "mine" {
		t.Errorf("networks = %s, want mine", got)
	}
	if nets.noHostPorts != nil {
		t.Error("a chain without portmap got a second, portmap-free chain")
	}
	// A later file in lexical order does not replace the first.
	if err := os.WriteFile(filepath.Join(confDir, "20-other.conflist"), []byte(strings.ReplaceAll(conf, "mine", "other")), 0o644); err != nil {
		t.Fatal(err)
	}
	nets, _ = m.current()
	if got := networkNames(nets.all); got != "mine" {
		t.Errorf("networks after adding 20-other = %s, want mine", got)
	}
	// Removing every config brings the built-in network back.
	for _, f := range []string{"10-mine.conflist", "20-other.conflist"} {
		if err := os.Remove(filepath.Join(confDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready after removing configs: %v", err)
	}
	if !m.UsesBuiltin() {
		t.Error("built-in network not restored")
	}
}

func TestBrokenConfigIsNotReady(t *testing.T) {
	confDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(confDir, "10-bad.conflist"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{ConfDir: confDir, BinDirs: []string{t.TempDir()}, NetNSDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); err == nil {
		t.Fatal("Ready with an unparsable config succeeded")
	}
	// Fixing the file is noticed without a restart.
	if err := os.WriteFile(filepath.Join(confDir, "10-bad.conflist"), []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"loopback"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Ready with fixed config but no plugins = %v, want missing loopback", err)
	}
}

func networkNames(cni gocni.CNI) string {
	var names []string
	for _, n := range cni.GetConfig().Networks {
		names = append(names, n.Config.Name)
	}
	return strings.Join(names, ",")
}

func pluginTypes(cni gocni.CNI) string {
	var types []string
	for _, n := range cni.GetConfig().Networks {
		for _, p := range n.Config.Plugins {
			types = append(types, p.Network.Type)
		}
	}
	return strings.Join(types, ",")
}

func TestWithoutPlugin(t *testing.T) {
	conf := `{"cniVersion":"1.0.0","name":"n","plugins":[
		{"type":"bridge","mtu":9001,"big":12345678901234567890,"ipam":{"type":"host-local"}},
		{"type":"portmap","capabilities":{"portMappings":true}},
		{"type":"bandwidth","capabilities":{"bandwidth":true}}]}`
	out, ok, err := withoutPlugin([]byte(conf), "portmap")
	if err != nil || !ok {
		t.Fatalf("withoutPlugin = %v, %v", ok, err)
	}
	got := string(out)
	for _, want := range []string{`"type":"bridge"`, `"mtu":9001`, `"big":12345678901234567890`, `"type":"bandwidth"`, `"name":"n"`} {
		if !strings.Contains(got, want) {
			t.Errorf("trimmed conflist lacks %s: %s", want, got)
		}
	}
	if strings.Contains(got, "portmap") {
		t.Errorf("trimmed conflist still has portmap: %s", got)
	}
	for name, c := range map[string]string{
		"no portmap":    `{"name":"n","plugins":[{"type":"bridge"}]}`,
		"only portmap":  `{"name":"n","plugins":[{"type":"portmap"}]}`,
		"plugins empty": `{"name":"n","plugins":[]}`,
	} {
		if _, ok, err := withoutPlugin([]byte(c), "portmap"); ok || err != nil {
			t.Errorf("%s: withoutPlugin = %v, %v; want nothing to trim", name, ok, err)
		}
	}
	if _, _, err := withoutPlugin([]byte("{not json"), "portmap"); err == nil {
		t.Error("withoutPlugin accepted a broken conflist")
	}
}

func TestForPodPicksChainByHostPorts(t *testing.T) {
	cfg := Config{BinDirs: []string{fakePlugins(t, "bridge", "portmap")}, ConfDir: t.TempDir()}
	nets, err := load(cfg, true)
	if err != nil || nets.noHostPorts == nil {
		t.Fatalf("load built-in network: %+v, %v", nets, err)
	}
	all, trimmed := nets.all, nets.noHostPorts
	pod := &runtime.PodSandboxConfig{PortMappings: []*runtime.PortMapping{{ContainerPort: 80}}}
	if nets.forPod(pod) != trimmed {
		t.Error("a pod with a container port but no host port got the chain with portmap")
	}
	pod.PortMappings = append(pod.PortMappings, &runtime.PortMapping{ContainerPort: 80, HostPort: 8080})
	if nets.forPod(pod) != all {
		t.Error("a pod with a host port did not get the chain with portmap")
	}
	if (&networks{all: all}).forPod(&runtime.PodSandboxConfig{}) != all {
		t.Error("without a trimmed chain every pod must get the whole one")
	}
}
