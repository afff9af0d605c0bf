//go:build linux

package stack

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// CNIBinDir is where Debian's containernetworking-plugins installs.
const CNIBinDir = "/usr/lib/cni"

// Network is a CNI configuration private to one test run: its own bridge,
// subnet and network name, so runs on one machine cannot collide (two
// bridges with the same subnet break routing for both).
type Network struct {
	ConfDir string
	Name    string
	Bridge  string
	Subnet  *net.IPNet
	Gateway net.IP
}

// HostLocalDir is where the host-local IPAM plugin records allocations.
func (n *Network) HostLocalDir() string { return filepath.Join("/var/lib/cni/networks", n.Name) }

// WriteNetwork picks a free bridge name and subnet and writes a conflist
// (bridge with host-local IPAM, portmap) into confDir. Loopback is not in
// it: bringing lo up is crishim's job.
func WriteNetwork(confDir string) (*Network, error) {
	return WriteNetworkSized(confDir, 24)
}

// WriteNetworkSized is WriteNetwork with a subnet of prefix bits (16-24):
// a /24 holds 253 pods, a /22 1021.
func WriteNetworkSized(confDir string, prefix int) (*Network, error) {
	if prefix < 16 || prefix > 24 {
		return nil, fmt.Errorf("subnet prefix /%d: want /16 to /24", prefix)
	}
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return nil, err
	}
	n := &Network{ConfDir: confDir}
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			return nil, errors.New("no free bridge name and subnet found in 20 attempts")
		}
		suffix := randomHex(2)
		b, err := rand.Int(rand.Reader, big.NewInt(50))
		if err != nil {
			return nil, err
		}
		c, err := rand.Int(rand.Reader, big.NewInt(256))
		if err != nil {
			return nil, err
		}
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/%d", 200+b.Int64(), c.Int64(), prefix))
		bridge := "cst" + suffix
		if _, err := net.InterfaceByName(bridge); err == nil {
			continue
		}
		if subnetInUse(subnet) {
			continue
		}
		n.Name, n.Bridge, n.Subnet = "crishim-it-"+suffix, bridge, subnet
		break
	}
	n.Gateway = make(net.IP, 4)
	copy(n.Gateway, n.Subnet.IP.To4())
	n.Gateway[3] = 1

	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.Name,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      n.Bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": n.Subnet.String(), "gateway": n.Gateway.String()}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
			},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(confDir, "10-"+n.Name+".conflist"), data, 0o644); err != nil {
		return nil, err
	}
	return n, nil
}

// subnetInUse reports whether any interface address or the new subnet
// overlap, which would make routes to pods ambiguous.
func subnetInUse(subnet *net.IPNet) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && (subnet.Contains(ipn.IP) || ipn.Contains(subnet.IP)) {
			if ones, _ := ipn.Mask.Size(); ones > 0 {
				return true
			}
		}
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// IPAllocations lists the addresses host-local still holds for the network.
func (n *Network) IPAllocations() ([]string, error) {
	entries, err := os.ReadDir(n.HostLocalDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips, nil
}

// BridgePorts lists the interfaces (pod veths) attached to the bridge.
func (n *Network) BridgePorts() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join("/sys/class/net", n.Bridge, "brif"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ports []string
	for _, e := range entries {
		ports = append(ports, e.Name())
	}
	return ports, nil
}

// NATRules lists the iptables nat rules that name this network (portmap
// and bridge tag theirs with `name: "<network>"` comments).
func (n *Network) NATRules() ([]string, error) {
	out, err := run("iptables", "-w", "-t", "nat", "-S")
	if err != nil {
		return nil, err
	}
	var rules []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `name: \"`+n.Name+`\"`) || strings.Contains(line, `name: "`+n.Name+`"`) {
			rules = append(rules, line)
		}
	}
	return rules, nil
}

var jumpTarget = regexp.MustCompile(`-j (CNI-[A-Za-z0-9-]+)`)

// Cleanup removes what CNI plugins may have left behind for this network:
// the bridge, the IPAM records, the nat rules that name it and the chains
// only those rules used. Shared portmap chains stay; other runs use them.
func (n *Network) Cleanup() error {
	var errs []error
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		if _, err := run("ip", "link", "del", n.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(n.HostLocalDir()); err != nil {
		errs = append(errs, err)
	}
	rules, err := n.NATRules()
	if err != nil {
		errs = append(errs, err)
	}
	chains := map[string]bool{}
	for _, rule := range rules {
		if m := jumpTarget.FindStringSubmatch(rule); m != nil && !strings.HasPrefix(m[1], "CNI-HOSTPORT-") {
			chains[m[1]] = true
		}
		if !strings.HasPrefix(rule, "-A ") {
			continue
		}
		args := append([]string{"iptables", "-w", "-t", "nat", "-D"}, splitRule(strings.TrimPrefix(rule, "-A "))...)
		if _, err := run(args...); err != nil {
			errs = append(errs, err)
		}
	}
	for chain := range chains {
		_, _ = run("iptables", "-w", "-t", "nat", "-F", chain)
		if _, err := run("iptables", "-w", "-t", "nat", "-X", chain); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// splitRule splits an `iptables -S` rule into arguments, honouring the
// double quotes iptables puts around comments.
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == '"':
			inQuote = !inQuote
			have = true
		case ch == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// WriteRegistryHosts writes a containerd hosts.toml directory in which each
// alias (a made-up registry name) and the registry's own host:port resolve
// to the registry over plain HTTP.
func WriteRegistryHosts(dir, registryHost string, aliases ...string) error {
	write := func(host, content string) error {
		if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(content), 0o644)
	}
	for _, alias := range aliases {
		content := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "https://"+alias, "http://"+registryHost)
		if err := write(alias, content); err != nil {
			return err
		}
	}
	return write(registryHost, fmt.Sprintf("server = %q\n", "http://"+registryHost))
}
