package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/crishim/crishim/internal/stack"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat CPU times; 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcUsage is what a process has used so far.
type ProcUsage struct {
	RSS int64         // bytes resident now
	CPU time.Duration // user + system time since it started
}

// ReadUsage reads a process's resident set and CPU time from /proc.
func ReadUsage(pid int) (ProcUsage, error) {
	if pid <= 0 {
		return ProcUsage{}, fmt.Errorf("no process (pid %d)", pid)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcUsage{}, err
	}
	var u ProcUsage
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			u.RSS = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcUsage{}, err
	}
	cpu, err := parseStatCPU(string(stat))
	if err != nil {
		return ProcUsage{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	u.CPU = cpu
	return u, nil
}

// parseStatCPU adds utime and stime (fields 14 and 15) of a stat line. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from its closing parenthesis.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat %q", stat)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat times %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * clockTick, nil
}

// ShimUsage sums the resident sets of the runc shims serving containerd
// namespace ns of the containerd at address (any, when empty; their
// command line names both) and counts them.
func ShimUsage(ns, address string) (count int, rss int64) {
	var ofAddress map[int]bool
	if address != "" {
		ofAddress = map[int]bool{}
		for _, pid := range stack.ProcessesWithArgs("containerd-shim-runc-v2", "-address", address) {
			ofAddress[pid] = true
		}
	}
	for _, pid := range stack.ProcessesWithArgs("containerd-shim-runc-v2", "-namespace", ns) {
		if ofAddress != nil && !ofAddress[pid] {
			continue
		}
		count++
		if u, err := ReadUsage(pid); err == nil {
			rss += u.RSS
		}
	}
	return count, rss
}

// MachineCPU is the CPU time all processes have used since boot: the busy
// fields of /proc/stat's cpu line (idle and iowait left out). It includes
// what neither daemon accounts as its own: shims, runc, CNI plugins, the
// kernel's work for them, and the benchmark client.
func MachineCPU() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineCPU(string(data))
}

func parseMachineCPU(stat string) (time.Duration, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat cpu line %q", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat cpu line %q", line)
		}
		busy += v
	}
	return time.Duration(busy) * clockTick, nil
}
