package stats

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
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
// the CRI reports it for pods, not for containers. Each file is opened
// and closed again; CgroupFiles keeps them open for repeated reads.
func ReadCgroup(root, dir string, v2, processes bool, at time.Time) (Sample, error) {
	f := newCgroupFiles(root, dir, v2, false)
	return f.Read(processes, at)
}

// counter is one of the files a Sample is read from.
type counter int

const (
	counterCPU     counter = iota // v1 cpuacct.usage, v2 cpu.stat
	counterMemory                 // v1 memory.usage_in_bytes, v2 memory.current
	counterLimit                  // v1 memory.limit_in_bytes, v2 memory.max
	counterPids                   // pids.current
	counterMemStat                // memory.stat
	counters
)

// CgroupFiles reads one cgroup's counters again and again, as the
// kubelet's periodic stats of every running container do, keeping each
// file open between reads: opening a cgroupfs path (a walk of its
// directories) cost more than reading it. A file is read from offset 0
// each time, which makes the kernel generate it afresh. It is safe for
// concurrent use. The number of files kept open by all CgroupFiles
// together is bounded (see keepOpen); beyond it, files are opened and
// closed on each read, as ReadCgroup does.
type CgroupFiles struct {
	v2    bool
	keep  bool
	paths [counters]string

	mu     sync.Mutex
	fds    [counters]int // -1: not open
	closed bool
}

// NewCgroupFiles returns the counters of cgroup dir under root (as for
// ReadCgroup). Nothing is opened until the first Read; Close lets go.
func NewCgroupFiles(root, dir string, v2 bool) *CgroupFiles {
	return newCgroupFiles(root, dir, v2, true)
}

func newCgroupFiles(root, dir string, v2, keep bool) *CgroupFiles {
	f := &CgroupFiles{v2: v2, keep: keep}
	if v2 {
		d := filepath.Join(root, dir)
		f.paths = [counters]string{
			filepath.Join(d, "cpu.stat"), filepath.Join(d, "memory.current"), filepath.Join(d, "memory.max"),
			filepath.Join(d, "pids.current"), filepath.Join(d, "memory.stat"),
		}
	} else {
		mem := filepath.Join(root, "memory", dir)
		f.paths = [counters]string{
			filepath.Join(root, "cpuacct", dir, "cpuacct.usage"), filepath.Join(mem, "memory.usage_in_bytes"),
			filepath.Join(mem, "memory.limit_in_bytes"), filepath.Join(root, "pids", dir, "pids.current"),
			filepath.Join(mem, "memory.stat"),
		}
	}
	for i := range f.fds {
		f.fds[i] = -1
	}
	return f
}

// errClosed is a Read after Close.
var errClosed = errors.New("cgroup files closed")

// The memory.stat keys a Sample uses, in the order Read fills them:
// inactive file pages, anonymous (RSS) memory, page faults and major page
// faults.
var (
	memStatKeysV1 = [4]string{"total_inactive_file", "total_rss", "pgfault", "pgmajfault"}
	memStatKeysV2 = [4]string{"inactive_file", "anon", "pgfault", "pgmajfault"}
)

// Read samples the cgroup now; the process count only if processes.
func (f *CgroupFiles) Read(processes bool, at time.Time) (Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return Sample{}, errClosed
	}
	r := readers.Get().(*fileReader)
	defer readers.Put(r)
	s := Sample{At: at}
	keys := memStatKeysV1
	if f.v2 {
		keys = memStatKeysV2
		var usageUsec uint64
		if err := f.keyed(r, counterCPU, []keyedValue{{"usage_usec", &usageUsec}}); err != nil {
			return Sample{}, err
		}
		s.CPU = usageUsec * 1000
	} else if err := f.uint(r, counterCPU, &s.CPU); err != nil {
		return Sample{}, err
	}
	var limitRaw, inactiveFile uint64
	if err := f.uint(r, counterMemory, &s.MemoryUsage); err != nil {
		return Sample{}, err
	}
	if err := f.uint(r, counterLimit, &limitRaw); err != nil {
		return Sample{}, err
	}
	if processes {
		if err := f.uint(r, counterPids, &s.Processes); err != nil {
			return Sample{}, err
		}
	}
	err := f.keyed(r, counterMemStat, []keyedValue{
		{keys[0], &inactiveFile}, {keys[1], &s.RSS}, {keys[2], &s.PageFaults}, {keys[3], &s.MajorPageFaults},
	})
	if err != nil {
		return Sample{}, err
	}
	s.Limit = limit(limitRaw)
	s.WorkingSet = WorkingSet(s.MemoryUsage, inactiveFile)
	return s, nil
}

// Close closes the files kept open; later Reads fail.
func (f *CgroupFiles) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for i, fd := range f.fds {
		if fd >= 0 {
			f.forget(counter(i))
		}
	}
}

// forget closes c's file and gives its place in keepOpen back; f.mu is held.
func (f *CgroupFiles) forget(c counter) {
	syscall.Close(f.fds[c])
	f.fds[c] = -1
	kept.Add(-1)
}

// content returns c's file as the kernel generates it now, in r's buffer
// (valid until r's next read). A file that fails is closed, so that the
// next Read opens its path again (or finds it gone).
func (f *CgroupFiles) content(r *fileReader, c counter) ([]byte, error) {
	path := f.paths[c]
	fd := f.fds[c]
	if fd < 0 {
		var err error
		if fd, err = openRetry(path); err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		if f.keep && reserveKept() {
			f.fds[c] = fd
		} else {
			defer syscall.Close(fd)
		}
	}
	data, err := r.pread(fd)
	if err != nil {
		if f.fds[c] >= 0 {
			f.forget(c)
		}
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return data, nil
}

// kept counts the cgroup files held open by all CgroupFiles; keepOpen
// bounds it, so that hundreds of containers' files never crowd out the
// sockets, FIFOs and log files crishim needs descriptors for.
var (
	kept         atomic.Int64
	keepOpenOnce sync.Once
	keepOpen     int64
)

// reserveKept takes a place for one more kept file, if there is one.
func reserveKept() bool {
	keepOpenOnce.Do(func() {
		// A quarter of the descriptor limit (which Go raises to the hard
		// limit at start), and no more than five files of 1600 containers.
		keepOpen = 8000
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && int64(lim.Cur/4) < keepOpen {
			keepOpen = int64(lim.Cur / 4)
		}
	})
	if kept.Add(1) > keepOpen {
		kept.Add(-1)
		return false
	}
	return true
}

// readers keeps file readers, with their buffers, between the reads of
// the kubelet's periodic stats of every container.
var readers = sync.Pool{New: func() any { return newFileReader() }}

// fileReader reads cgroup files into one buffer with plain syscalls:
// ListContainerStats reads four files per container, and os.ReadFile's
// fstat, its registration of each (pollable) cgroup file with the
// netpoller and a buffer per file were most of the cost.
type fileReader struct {
	buf []byte
}

func newFileReader() *fileReader { return &fileReader{buf: make([]byte, 0, 4096)} }

// pread returns the whole content of fd from offset 0, valid until the
// next read into r.
func (r *fileReader) pread(fd int) ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		if len(r.buf) == cap(r.buf) {
			r.buf = append(r.buf, 0)[:len(r.buf)]
		}
		n, err := syscall.Pread(fd, r.buf[len(r.buf):cap(r.buf)], int64(len(r.buf)))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
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

// uint reads c's file, which holds one number, into v; "max" (cgroup
// v2's no limit) is the largest.
func (f *CgroupFiles) uint(r *fileReader, c counter, v *uint64) error {
	data, err := f.content(r, c)
	if err != nil {
		return err
	}
	data = bytes.TrimSpace(data)
	if string(data) == "max" {
		*v = math.MaxUint64
		return nil
	}
	n, err := strconv.ParseUint(string(data), 10, 64)
	if err != nil {
		return fmt.Errorf("read cgroup file %s: %w", f.paths[c], err)
	}
	*v = n
	return nil
}

// keyedValue names a key of a "key value" file and where its value goes.
type keyedValue struct {
	key  string
	into *uint64
}

// keyed reads the wanted keys of c's "key value" per line file, such as
// memory.stat; a key the file lacks (or whose value is not a number)
// reads as 0.
func (f *CgroupFiles) keyed(r *fileReader, c counter, want []keyedValue) error {
	data, err := f.content(r, c)
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
