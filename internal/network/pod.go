package network

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BuiltinConfList is the pod network used when the conf dir holds no
// configuration, so that a fresh machine runs pods without setup.
const BuiltinConfList = `{
  "cniVersion": "1.0.0",
  "name": "crishim",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crishim0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.88.0.0/16"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true},
      "snat": true
    }
  ]
}`

// Pod annotations the kubelet's bandwidth shaping uses.
const (
	ingressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	egressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// namespaceOpts are the per-pod CNI arguments: the K8S_* args plugins such
// as Calico read, and the capability args for port mappings, DNS and
// bandwidth (passed only to plugins that declare the capability).
func namespaceOpts(id string, pod *runtime.PodSandboxConfig) ([]gocni.NamespaceOpts, error) {
	md := pod.GetMetadata()
	opts := []gocni.NamespaceOpts{
		gocni.WithLabels(map[string]string{
			"IgnoreUnknown":              "1",
			"K8S_POD_NAMESPACE":          md.GetNamespace(),
			"K8S_POD_NAME":               md.GetName(),
			"K8S_POD_INFRA_CONTAINER_ID": id,
			"K8S_POD_UID":                md.GetUid(),
		}),
	}
	if pm := portMappings(pod.GetPortMappings()); len(pm) > 0 {
		opts = append(opts, gocni.WithCapabilityPortMap(pm))
	}
	if dns := pod.GetDnsConfig(); dns != nil {
		opts = append(opts, gocni.WithCapabilityDNS(gocni.DNS{
			Servers:  dns.GetServers(),
			Searches: dns.GetSearches(),
			Options:  dns.GetOptions(),
		}))
	}
	bw, err := bandwidth(pod.GetAnnotations())
	if err != nil {
		return nil, err
	}
	if bw != nil {
		opts = append(opts, gocni.WithCapabilityBandWidth(*bw))
	}
	return opts, nil
}

// portMappings keeps the mappings that publish a host port; the others
// only document the container port.
func portMappings(in []*runtime.PortMapping) []gocni.PortMapping {
	var out []gocni.PortMapping
	for _, p := range in {
		if p.GetHostPort() <= 0 {
			continue
		}
		proto := "tcp"
		switch p.GetProtocol() {
		case runtime.Protocol_UDP:
			proto = "udp"
		case runtime.Protocol_SCTP:
			proto = "sctp"
		}
		out = append(out, gocni.PortMapping{
			HostPort:      p.GetHostPort(),
			ContainerPort: p.GetContainerPort(),
			Protocol:      proto,
			HostIP:        p.GetHostIp(),
		})
	}
	return out
}

// bandwidth reads the pod's bandwidth annotations (bits per second with
// Kubernetes quantity suffixes); nil when neither is set.
func bandwidth(annotations map[string]string) (*gocni.BandWidth, error) {
	in, hasIn := annotations[ingressBandwidthAnnotation]
	out, hasOut := annotations[egressBandwidthAnnotation]
	if !hasIn && !hasOut {
		return nil, nil
	}
	bw := &gocni.BandWidth{}
	if hasIn {
		rate, err := parseQuantity(in)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %v: %w", ingressBandwidthAnnotation, err, errdefs.ErrInvalidArgument)
		}
		// The bandwidth plugin wants a burst with every rate; an unbounded
		// burst matches the kubelet's historical shaping.
		bw.IngressRate, bw.IngressBurst = rate, math.MaxInt32
	}
	if hasOut {
		rate, err := parseQuantity(out)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %v: %w", egressBandwidthAnnotation, err, errdefs.ErrInvalidArgument)
		}
		bw.EgressRate, bw.EgressBurst = rate, math.MaxInt32
	}
	return bw, nil
}

// parseQuantity parses the subset of Kubernetes resource quantities that
// bandwidth annotations use: a non-negative integer with an optional
// decimal (k, M, G, T, P) or binary (Ki ... Pi) suffix.
func parseQuantity(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	suffixes := []struct {
		name string
		mult uint64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15},
	}
	mult := uint64(1)
	for _, sfx := range suffixes {
		if strings.HasSuffix(s, sfx.name) {
			s, mult = strings.TrimSuffix(s, sfx.name), sfx.mult
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid quantity %q", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("quantity %q overflows", s)
	}
	return n * mult, nil
}

// podIPs picks the pod's addresses from a CNI result: those on interfaces
// inside the pod other than loopback, the first IPv4 one as primary.
func podIPs(res *gocni.Result) (string, []string) {
	names := make([]string, 0, len(res.Interfaces))
	for name := range res.Interfaces {
		names = append(names, name)
	}
	// eth0 (the default network) before any other interface.
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "eth0") != (names[j] == "eth0") {
			return names[i] == "eth0"
		}
		return names[i] < names[j]
	})
	var v4, v6 []string
	seen := map[string]bool{}
	for _, name := range names {
		cfg := res.Interfaces[name]
		// Host-side interfaces (the bridge, veth peers) have no sandbox;
		// go-cni's eth0 placeholder has none either but holds the IPs of
		// plugins that report no interfaces.
		if name == "lo" || cfg == nil || (cfg.Sandbox == "" && name != "eth0") {
			continue
		}
		for _, ipc := range cfg.IPConfigs {
			ip := ipc.IP
			if ip == nil || ip.IsLoopback() || seen[ip.String()] {
				continue
			}
			seen[ip.String()] = true
			if ip.To4() != nil {
				v4 = append(v4, ip.String())
			} else {
				v6 = append(v6, ip.String())
			}
		}
	}
	all := append(v4, v6...)
	if len(all) == 0 {
		return "", nil
	}
	return all[0], all[1:]
}
