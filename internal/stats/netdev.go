package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultInterface is the pod's interface in the CNI convention crishim
// follows (go-cni names the pod network's interface eth0).
const DefaultInterface = "eth0"

// ReadNetDev reads the interface counters of the network namespace
// process pid lives in, from /proc/<pid>/net/dev: no need to enter the
// namespace.
func ReadNetDev(pid uint32, at time.Time) (*runtime.NetworkUsage, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return nil, fmt.Errorf("read network counters of pid %d: %w", pid, err)
	}
	ifaces, err := ParseNetDev(data)
	if err != nil {
		return nil, fmt.Errorf("network counters of pid %d: %w", pid, err)
	}
	return NetworkUsage(ifaces, at), nil
}

// ParseNetDev parses the /proc/net/dev table, loopback excluded.
func ParseNetDev(data []byte) ([]*runtime.NetworkInterfaceUsage, error) {
	var out []*runtime.NetworkInterfaceUsage
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 0; sc.Scan(); n++ {
		line := sc.Text()
		if n < 2 { // two header lines
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %q: no interface name", line)
		}
		name = strings.TrimSpace(name)
		if name == "lo" {
			continue
		}
		f := strings.Fields(rest)
		// receive: bytes packets errs drop fifo frame compressed multicast,
		// transmit: bytes packets errs drop fifo colls carrier compressed
		if len(f) < 16 {
			return nil, fmt.Errorf("interface %s: %d counters, want 16", name, len(f))
		}
		var v [4]uint64
		for i, col := range []int{0, 2, 8, 10} {
			x, err := strconv.ParseUint(f[col], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("interface %s: %w", name, err)
			}
			v[i] = x
		}
		out = append(out, &runtime.NetworkInterfaceUsage{
			Name: name, RxBytes: u64(v[0]), RxErrors: u64(v[1]), TxBytes: u64(v[2]), TxErrors: u64(v[3]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// NetworkUsage lists every interface, as cAdvisor does, and names eth0
// the default one.
func NetworkUsage(ifaces []*runtime.NetworkInterfaceUsage, at time.Time) *runtime.NetworkUsage {
	out := &runtime.NetworkUsage{Timestamp: at.UnixNano(), Interfaces: ifaces}
	for _, i := range ifaces {
		if i.Name == DefaultInterface {
			out.DefaultInterface = i
		}
	}
	return out
}
