package stats

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ReadCgroup reads the counters a Sample holds straight from the files of
// cgroup dir (relative to each hierarchy, as internal/cgroup.Path gives
// it) under root, where the hierarchies are mounted. They are the files
// containerd's runc shim reads for a task's metrics, so the Sample is the
// one Decode would make of them, without a round trip to containerd and a
// shim per container. Any file missing or unreadable is an error: the
// caller then asks containerd, which knows cgroups this reader does not.
// The process count (pids.current) is read only when processes is set:
// the CRI reports it for pods, not for containers.
func ReadCgroup(root, dir string, v2, processes bool, at time.Time) (Sample, error) {
	r := readers.Get().(*fileReader)
	defer readers.Put(r)
	if v2 {
		return r.cgroupV2(filepath.Join(root, dir), processes, at)
	}
	return r.cgroupV1(root, dir, processes, at)
}

// readers keeps file readers, with their buffers, between the reads of
// the kubelet's periodic stats of every container.
var readers = sync.Pool{New: func() any { return newFileReader() }}

func (r *fileReader) cgroupV1(root, dir string, processes bool, at time.Time) (Sample, error) {
	s := Sample{At: at}
	mem := filepath.Join(root, "memory", dir)
	var limitRaw uint64
	files := []uintFile{
		{filepath.Join(root, "cpuacct", dir, "cpuacct.usage"), &s.CPU},
		{filepath.Join(mem, "memory.usage_in_bytes"), &s.MemoryUsage},
		{filepath.Join(mem, "memory.limit_in_bytes"), &limitRaw},
	}
	if processes {
		files = append(files, uintFile{filepath.Join(root, "pids", dir, "pids.current"), &s.Processes})
	}
	err := r.uints(files...)
	if err != nil {
		return Sample{}, err
	}
	var inactiveFile uint64
	err = r.keyed(filepath.Join(mem, "memory.stat"), []keyedValue{
		{"total_inactive_file", &inactiveFile},
		{"total_rss", &s.RSS},
		{"pgfault", &s.PageFaults},
		{"pgmajfault", &s.MajorPageFaults},
	})
	if err != nil {
		return Sample{}, err
	}
	s.Limit = limit(limitRaw)
	s.WorkingSet = WorkingSet(s.MemoryUsage, inactiveFile)
	return s, nil
}

func (r *fileReader) cgroupV2(dir string, processes bool, at time.Time) (Sample, error) {
	s := Sample{At: at}
	var usageUsec uint64
	if err := r.keyed(filepath.Join(dir, "cpu.stat"), []keyedValue{{"usage_usec", &usageUsec}}); err != nil {
		return Sample{}, err
	}
	s.CPU = usageUsec * 1000
	var limitRaw uint64
	files := []uintFile{
		{filepath.Join(dir, "memory.current"), &s.MemoryUsage},
		{filepath.Join(dir, "memory.max"), &limitRaw},
	}
	if processes {
		files = append(files, uintFile{filepath.Join(dir, "pids.current"), &s.Processes})
	}
	err := r.uints(files...)
	if err != nil {
		return Sample{}, err
	}
	var inactiveFile uint64
	err = r.keyed(filepath.Join(dir, "memory.stat"), []keyedValue{
		{"inactive_file", &inactiveFile},
		{"anon", &s.RSS},
		{"pgfault", &s.PageFaults},
		{"pgmajfault", &s.MajorPageFaults},
	})
	if err != nil {
		return Sample{}, err
	}
	s.Limit = limit(limitRaw)
	s.WorkingSet = WorkingSet(s.MemoryUsage, inactiveFile)
	return s, nil
}

// fileReader reads a container's cgroup files into one buffer with plain
// open/read/close: ListContainerStats reads five files per container, and
// os.ReadFile's fstat, its registration of each (pollable) cgroup file
// with the netpoller and a buffer per file were most of the cost.
type fileReader struct {
	buf []byte
}

func newFileReader() *fileReader { return &fileReader{buf: make([]byte, 0, 4096)} }

// uintFile is a file holding one number, and where it goes.
type uintFile struct {
	path string
	into *uint64
}

// uints reads each file's number into its place; the first error ends it.
func (r *fileReader) uints(files ...uintFile) error {
	for _, f := range files {
		v, err := r.uint(f.path)
		if err != nil {
			return err
		}
		*f.into = v
	}
	return nil
}

// read returns the content of path, valid until the next read.
func (r *fileReader) read(path string) ([]byte, error) {
	fd, err := openRetry(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	r.buf = r.buf[:0]
	for {
		if len(r.buf) == cap(r.buf) {
			r.buf = append(r.buf, 0)[:len(r.buf)]
		}
		n, err := syscall.Read(fd, r.buf[len(r.buf):cap(r.buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return r.buf, nil
		}
		r.buf = r.buf[:len(r.buf)+n]
	}
}

func openRetry(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// uint reads a file holding one number; "max" (cgroup v2's no limit) is
// the largest.
func (r *fileReader) uint(path string) (uint64, error) {
	data, err := r.read(path)
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

// keyedValue names a key of a "key value" file and where its value goes.
type keyedValue struct {
	key  string
	into *uint64
}

// keyed reads the wanted keys of a "key value" per line file such as
// memory.stat; a key the file lacks (or whose value is not a number)
// reads as 0.
func (r *fileReader) keyed(path string, want []keyedValue) error {
	data, err := r.read(path)
	if err != nil {
		return err
	}
	for _, w := range want {
		*w.into = 0
	}
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
		for _, w := range want {
			if string(line[:sp]) != w.key {
				continue
			}
			if v, err := strconv.ParseUint(string(bytes.TrimSpace(line[sp+1:])), 10, 64); err == nil {
				*w.into = v
			}
			break
		}
	}
	return nil
}
