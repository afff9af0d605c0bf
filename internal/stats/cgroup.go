package stats

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ReadCgroup reads the counters a Sample holds straight from the files of
// cgroup dir (relative to each hierarchy, as internal/cgroup.Path gives
// it) under root, where the hierarchies are mounted. They are the files
// containerd's runc shim reads for a task's metrics, so the Sample is the
// one Decode would make of them, without a round trip to containerd and a
// shim per container. Any file missing or unreadable is an error: the
// caller then asks containerd, which knows cgroups this reader does not.
func ReadCgroup(root, dir string, v2 bool, at time.Time) (Sample, error) {
	if v2 {
		return readCgroupV2(filepath.Join(root, dir), at)
	}
	return readCgroupV1(root, dir, at)
}

func readCgroupV1(root, dir string, at time.Time) (Sample, error) {
	s := Sample{At: at}
	mem := filepath.Join(root, "memory", dir)
	var limitRaw uint64
	for _, f := range []struct {
		path string
		into *uint64
	}{
		{filepath.Join(root, "cpuacct", dir, "cpuacct.usage"), &s.CPU},
		{filepath.Join(mem, "memory.usage_in_bytes"), &s.MemoryUsage},
		{filepath.Join(mem, "memory.limit_in_bytes"), &limitRaw},
		{filepath.Join(root, "pids", dir, "pids.current"), &s.Processes},
	} {
		v, err := readUint(f.path)
		if err != nil {
			return Sample{}, err
		}
		*f.into = v
	}
	memStat, err := readKeyed(filepath.Join(mem, "memory.stat"))
	if err != nil {
		return Sample{}, err
	}
	s.Limit = limit(limitRaw)
	s.WorkingSet = WorkingSet(s.MemoryUsage, memStat["total_inactive_file"])
	s.RSS = memStat["total_rss"]
	s.PageFaults = memStat["pgfault"]
	s.MajorPageFaults = memStat["pgmajfault"]
	return s, nil
}

func readCgroupV2(dir string, at time.Time) (Sample, error) {
	s := Sample{At: at}
	cpuStat, err := readKeyed(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return Sample{}, err
	}
	s.CPU = cpuStat["usage_usec"] * 1000
	var limitRaw uint64
	for _, f := range []struct {
		path string
		into *uint64
	}{
		{filepath.Join(dir, "memory.current"), &s.MemoryUsage},
		{filepath.Join(dir, "memory.max"), &limitRaw},
		{filepath.Join(dir, "pids.current"), &s.Processes},
	} {
		v, err := readUint(f.path)
		if err != nil {
			return Sample{}, err
		}
		*f.into = v
	}
	memStat, err := readKeyed(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return Sample{}, err
	}
	s.Limit = limit(limitRaw)
	s.WorkingSet = WorkingSet(s.MemoryUsage, memStat["inactive_file"])
	s.RSS = memStat["anon"]
	s.PageFaults = memStat["pgfault"]
	s.MajorPageFaults = memStat["pgmajfault"]
	return s, nil
}

// readUint reads a file holding one number; "max" (cgroup v2's no limit)
// is the largest.
func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	data = bytes.TrimSpace(data)
	if string(data) == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(string(data), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read cgroup file %s: %w", path, err)
	}
	return v, nil
}

// readKeyed reads a "key value" per line file such as memory.stat.
func readKeyed(path string) (map[string]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, 48)
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			continue
		}
		v, err := strconv.ParseUint(string(bytes.TrimSpace(line[sp+1:])), 10, 64)
		if err != nil {
			continue
		}
		out[string(line[:sp])] = v
	}
	return out, nil
}
