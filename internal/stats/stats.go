// Package stats turns containerd task metrics (cgroup v1 or v2) and a
// pod's network counters into CRI stats, keeps the CPU samples that CPU
// rates need, and describes the same numbers as CRI metrics.
package stats

import (
	"fmt"
	"strings"
	"time"

	v1 "github.com/containerd/cgroups/stats/v1"
	v2 "github.com/containerd/cgroups/v2/stats"
	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Type URLs of the metrics containerd's runc shim reports.
const (
	typeCgroupV1 = "io.containerd.cgroups.v1.Metrics"
	typeCgroupV2 = "io.containerd.cgroups.v2.Metrics"
)

// unlimited is where a memory limit stops meaning anything: cgroup v1
// reports "no limit" as a page-rounded MaxInt64, v2 as MaxUint64.
const unlimited = uint64(1) << 62

// Sample is one reading of a cgroup, independent of its version.
type Sample struct {
	At time.Time
	// CPU is the cumulative CPU time in nanoseconds.
	CPU uint64
	// Memory in bytes; Limit is 0 when there is none.
	MemoryUsage     uint64
	WorkingSet      uint64
	RSS             uint64
	PageFaults      uint64
	MajorPageFaults uint64
	Limit           uint64
	Processes       uint64
}

// Decode reads the metrics a containerd task returned, identified by
// their type URL, into a Sample taken at at.
func Decode(typeURL string, value []byte, at time.Time) (Sample, error) {
	name := typeURL[strings.LastIndex(typeURL, "/")+1:]
	switch name {
	case typeCgroupV1:
		var m v1.Metrics
		if err := m.Unmarshal(value); err != nil {
			return Sample{}, fmt.Errorf("decode cgroup v1 metrics: %w", err)
		}
		return fromV1(&m, at), nil
	case typeCgroupV2:
		var m v2.Metrics
		if err := m.Unmarshal(value); err != nil {
			return Sample{}, fmt.Errorf("decode cgroup v2 metrics: %w", err)
		}
		return fromV2(&m, at), nil
	}
	return Sample{}, fmt.Errorf("task metrics of type %q: %w", typeURL, errdefs.ErrNotImplemented)
}

func fromV1(m *v1.Metrics, at time.Time) Sample {
	s := Sample{At: at}
	if m.CPU != nil && m.CPU.Usage != nil {
		s.CPU = m.CPU.Usage.Total
	}
	if mem := m.Memory; mem != nil {
		if mem.Usage != nil {
			s.MemoryUsage = mem.Usage.Usage
			s.Limit = limit(mem.Usage.Limit)
		}
		s.WorkingSet = WorkingSet(s.MemoryUsage, mem.TotalInactiveFile)
		s.RSS = mem.TotalRSS
		s.PageFaults = mem.PgFault
		s.MajorPageFaults = mem.PgMajFault
	}
	if m.Pids != nil {
		s.Processes = m.Pids.Current
	}
	return s
}

func fromV2(m *v2.Metrics, at time.Time) Sample {
	s := Sample{At: at}
	if m.CPU != nil {
		s.CPU = m.CPU.UsageUsec * 1000
	}
	if mem := m.Memory; mem != nil {
		s.MemoryUsage = mem.Usage
		s.WorkingSet = WorkingSet(s.MemoryUsage, mem.InactiveFile)
		s.RSS = mem.Anon
		s.PageFaults = mem.Pgfault
		s.MajorPageFaults = mem.Pgmajfault
		s.Limit = limit(mem.UsageLimit)
	}
	if m.Pids != nil {
		s.Processes = m.Pids.Current
	}
	return s
}

func limit(l uint64) uint64 {
	if l >= unlimited {
		return 0
	}
	return l
}

// WorkingSet is the memory the kernel cannot easily reclaim, the number
// the kubelet evicts on: usage less the inactive page cache.
func WorkingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

// Add sums two samples, for a pod made of containers. The time is the
// later one.
func (s Sample) Add(o Sample) Sample {
	out := Sample{
		At:              s.At,
		CPU:             s.CPU + o.CPU,
		MemoryUsage:     s.MemoryUsage + o.MemoryUsage,
		WorkingSet:      s.WorkingSet + o.WorkingSet,
		RSS:             s.RSS + o.RSS,
		PageFaults:      s.PageFaults + o.PageFaults,
		MajorPageFaults: s.MajorPageFaults + o.MajorPageFaults,
		Processes:       s.Processes + o.Processes,
	}
	if o.At.After(s.At) {
		out.At = o.At
	}
	return out
}

func u64(v uint64) *runtime.UInt64Value { return &runtime.UInt64Value{Value: v} }

// CPUUsage is the CRI form of s's CPU; rate is nil until two samples
// far enough apart were seen.
func (s Sample) CPUUsage(rate *uint64) *runtime.CpuUsage {
	out := &runtime.CpuUsage{Timestamp: s.At.UnixNano(), UsageCoreNanoSeconds: u64(s.CPU)}
	if rate != nil {
		out.UsageNanoCores = u64(*rate)
	}
	return out
}

// MemoryUsageCRI is the CRI form of s's memory.
func (s Sample) MemoryUsageCRI() *runtime.MemoryUsage {
	out := &runtime.MemoryUsage{
		Timestamp:       s.At.UnixNano(),
		WorkingSetBytes: u64(s.WorkingSet),
		UsageBytes:      u64(s.MemoryUsage),
		RssBytes:        u64(s.RSS),
		PageFaults:      u64(s.PageFaults),
		MajorPageFaults: u64(s.MajorPageFaults),
	}
	if s.Limit > 0 {
		avail := uint64(0)
		if s.Limit > s.WorkingSet {
			avail = s.Limit - s.WorkingSet
		}
		out.AvailableBytes = u64(avail)
	}
	return out
}
