package stats

import (
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Label keys, in cAdvisor's names and order, so that dashboards written
// for the kubelet's /metrics/cadvisor keep working.
var (
	containerLabels = []string{"container", "id", "image", "name", "namespace", "pod"}
	networkLabels   = []string{"container", "id", "image", "interface", "name", "namespace", "pod"}
)

type containerMetric struct {
	desc  *runtime.MetricDescriptor
	typ   runtime.MetricType
	value func(*runtime.ContainerStats) *runtime.UInt64Value
}

type networkMetric struct {
	desc  *runtime.MetricDescriptor
	value func(*runtime.NetworkInterfaceUsage) *runtime.UInt64Value
}

func seconds(v *runtime.UInt64Value) *runtime.UInt64Value {
	if v == nil {
		return nil
	}
	return u64(v.GetValue() / uint64(time.Second))
}

var containerMetrics = []containerMetric{
	{&runtime.MetricDescriptor{Name: "container_cpu_usage_seconds_total", Help: "Cumulative cpu time consumed in seconds.", LabelKeys: containerLabels},
		runtime.MetricType_COUNTER, func(s *runtime.ContainerStats) *runtime.UInt64Value {
			return seconds(s.GetCpu().GetUsageCoreNanoSeconds())
		}},
	{&runtime.MetricDescriptor{Name: "container_memory_usage_bytes", Help: "Current memory usage in bytes, including all memory regardless of when it was accessed.", LabelKeys: containerLabels},
		runtime.MetricType_GAUGE, func(s *runtime.ContainerStats) *runtime.UInt64Value { return s.GetMemory().GetUsageBytes() }},
	{&runtime.MetricDescriptor{Name: "container_memory_working_set_bytes", Help: "Current working set in bytes.", LabelKeys: containerLabels},
		runtime.MetricType_GAUGE, func(s *runtime.ContainerStats) *runtime.UInt64Value { return s.GetMemory().GetWorkingSetBytes() }},
	{&runtime.MetricDescriptor{Name: "container_memory_rss", Help: "Size of RSS in bytes.", LabelKeys: containerLabels},
		runtime.MetricType_GAUGE, func(s *runtime.ContainerStats) *runtime.UInt64Value { return s.GetMemory().GetRssBytes() }},
	{&runtime.MetricDescriptor{Name: "container_fs_usage_bytes", Help: "Number of bytes that are consumed by the container's writable layer.", LabelKeys: containerLabels},
		runtime.MetricType_GAUGE, func(s *runtime.ContainerStats) *runtime.UInt64Value { return s.GetWritableLayer().GetUsedBytes() }},
}

var networkMetrics = []networkMetric{
	{&runtime.MetricDescriptor{Name: "container_network_receive_bytes_total", Help: "Cumulative count of bytes received.", LabelKeys: networkLabels},
		func(i *runtime.NetworkInterfaceUsage) *runtime.UInt64Value { return i.GetRxBytes() }},
	{&runtime.MetricDescriptor{Name: "container_network_receive_errors_total", Help: "Cumulative count of errors encountered while receiving.", LabelKeys: networkLabels},
		func(i *runtime.NetworkInterfaceUsage) *runtime.UInt64Value { return i.GetRxErrors() }},
	{&runtime.MetricDescriptor{Name: "container_network_transmit_bytes_total", Help: "Cumulative count of bytes transmitted.", LabelKeys: networkLabels},
		func(i *runtime.NetworkInterfaceUsage) *runtime.UInt64Value { return i.GetTxBytes() }},
	{&runtime.MetricDescriptor{Name: "container_network_transmit_errors_total", Help: "Cumulative count of errors encountered while transmitting.", LabelKeys: networkLabels},
		func(i *runtime.NetworkInterfaceUsage) *runtime.UInt64Value { return i.GetTxErrors() }},
}

// Descriptors describes every metric PodMetrics produces.
func Descriptors() []*runtime.MetricDescriptor {
	var out []*runtime.MetricDescriptor
	for _, m := range containerMetrics {
		out = append(out, m.desc)
	}
	for _, m := range networkMetrics {
		out = append(out, m.desc)
	}
	return out
}

// PodMetrics expresses a pod's stats as metrics: network per interface
// at the pod level, CPU, memory and writable layer per container. images
// maps container IDs to their image names.
func PodMetrics(ps *runtime.PodSandboxStats, images map[string]string) *runtime.PodSandboxMetrics {
	attr := ps.GetAttributes()
	pod, ns := attr.GetMetadata().GetName(), attr.GetMetadata().GetNamespace()
	out := &runtime.PodSandboxMetrics{PodSandboxId: attr.GetId()}
	if net := ps.GetLinux().GetNetwork(); net != nil {
		for _, i := range net.GetInterfaces() {
			for _, m := range networkMetrics {
				if v := m.value(i); v != nil {
					out.Metrics = append(out.Metrics, &runtime.Metric{
						Name: m.desc.Name, Timestamp: net.GetTimestamp(), MetricType: runtime.MetricType_COUNTER,
						LabelValues: []string{"", attr.GetId(), "", i.GetName(), attr.GetId(), ns, pod}, Value: v,
					})
				}
			}
		}
	}
	for _, cs := range ps.GetLinux().GetContainers() {
		ca := cs.GetAttributes()
		cm := &runtime.ContainerMetrics{ContainerId: ca.GetId()}
		ts := cs.GetCpu().GetTimestamp()
		if ts == 0 {
			ts = cs.GetMemory().GetTimestamp()
		}
		for _, m := range containerMetrics {
			if v := m.value(cs); v != nil {
				cm.Metrics = append(cm.Metrics, &runtime.Metric{
					Name: m.desc.Name, Timestamp: ts, MetricType: m.typ,
					LabelValues: []string{ca.GetMetadata().GetName(), ca.GetId(), images[ca.GetId()], ca.GetId(), ns, pod},
					Value:       v,
				})
			}
		}
		out.ContainerMetrics = append(out.ContainerMetrics, cm)
	}
	return out
}
