package stats

import (
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const netDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     560       8    0    0    0     0          0         0      560       8    0    0    0     0       0          0
  eth0:   12345      40    1    0    0     0          0         0     6789      30    2    0    0     0       0          0
  net1:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
`

func TestParseNetDev(t *testing.T) {
	ifaces, err := ParseNetDev([]byte(netDev))
	if err != nil {
		t.Fatal(err)
	}
	if len(ifaces) != 2 {
		t.Fatalf("%d interfaces, want eth0 and net1 (no lo)", len(ifaces))
	}
	eth0 := ifaces[0]
	if eth0.Name != "eth0" || eth0.RxBytes.Value != 12345 || eth0.RxErrors.Value != 1 || eth0.TxBytes.Value != 6789 || eth0.TxErrors.Value != 2 {
		t.Errorf("eth0 = %v", eth0)
	}
	nu := NetworkUsage(ifaces, time.Unix(5, 0))
	if nu.DefaultInterface.GetName() != "eth0" || len(nu.Interfaces) != 2 || nu.Timestamp != 5e9 {
		t.Errorf("network usage %v", nu)
	}
}

func TestParseNetDevRejectsGarbage(t *testing.T) {
	for _, bad := range []string{
		"h1\nh2\neth0 12 13\n",
		"h1\nh2\neth0: 1 2 3\n",
		"h1\nh2\neth0: x 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
	} {
		if _, err := ParseNetDev([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestPodMetricsLabelsMatchDescriptors(t *testing.T) {
	descs := map[string]*runtime.MetricDescriptor{}
	for _, d := range Descriptors() {
		descs[d.Name] = d
	}
	ifaces, _ := ParseNetDev([]byte(netDev))
	ps := &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{Id: "pod1", Metadata: &runtime.PodSandboxMetadata{Name: "web", Namespace: "ns"}},
		Linux: &runtime.LinuxPodSandboxStats{
			Network: NetworkUsage(ifaces, time.Unix(1, 0)),
			Containers: []*runtime.ContainerStats{{
				Attributes: &runtime.ContainerAttributes{Id: "c1", Metadata: &runtime.ContainerMetadata{Name: "app"}},
				Cpu:        &runtime.CpuUsage{Timestamp: 7, UsageCoreNanoSeconds: u64(3e9 + 5)},
				Memory:     &runtime.MemoryUsage{Timestamp: 7, WorkingSetBytes: u64(42), UsageBytes: u64(50), RssBytes: u64(30)},
			}},
		},
	}
	pm := PodMetrics(ps, map[string]string{"c1": "busybox"})
	if pm.PodSandboxId != "pod1" || len(pm.Metrics) != 8 || len(pm.ContainerMetrics) != 1 {
		t.Fatalf("pod metrics %v", pm)
	}
	all := append([]*runtime.Metric(nil), pm.Metrics...)
	all = append(all, pm.ContainerMetrics[0].Metrics...)
	found := map[string]uint64{}
	for _, m := range all {
		d, ok := descs[m.Name]
		if !ok {
			t.Errorf("metric %s has no descriptor", m.Name)
			continue
		}
		if len(d.LabelKeys) != len(m.LabelValues) {
			t.Errorf("metric %s: %d label values for %d keys", m.Name, len(m.LabelValues), len(d.LabelKeys))
		}
		if m.Name != "container_network_receive_bytes_total" || m.LabelValues[3] == "eth0" {
			found[m.Name] = m.Value.GetValue()
		}
	}
	if found["container_cpu_usage_seconds_total"] != 3 || found["container_memory_working_set_bytes"] != 42 || found["container_network_receive_bytes_total"] != 12345 {
		t.Errorf("values %v", found)
	}
	if _, ok := found["container_fs_usage_bytes"]; ok {
		t.Error("a metric without a value was reported")
	}
}
