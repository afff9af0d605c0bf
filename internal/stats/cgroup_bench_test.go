package stats

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crishim/crishim/internal/cgroup"
)

const cgroupRoot = "/sys/fs/cgroup"

// makeCgroup makes a real, empty cgroup in the hierarchies a Sample is
// read from (it needs root) and returns its path relative to them and
// the directories it made, which it removes at the end of the test.
func makeCgroup(tb testing.TB, name string) (dir string, made []string) {
	tb.Helper()
	dir = fmt.Sprintf("/crishim-%s-%d", name, os.Getpid())
	if cgroup.V2() {
		made = []string{filepath.Join(cgroupRoot, dir)}
	} else {
		for _, c := range []string{"cpuacct", "memory", "pids"} {
			made = append(made, filepath.Join(cgroupRoot, c, dir))
		}
	}
	for _, d := range made {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatalf("make a cgroup to read (needs root): %v", err)
		}
		tb.Cleanup(func() { os.Remove(d) })
	}
	return dir, made
}

// BenchmarkReadCgroup reads one real (empty) cgroup's files as
// ListContainerStats did for each running container before it kept them
// open: open, read, close.
func BenchmarkReadCgroup(b *testing.B) {
	v2 := cgroup.V2()
	dir, _ := makeCgroup(b, "bench")
	if _, err := ReadCgroup(cgroupRoot, dir, v2, false, time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadCgroup(cgroupRoot, dir, v2, false, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCgroupFiles reads the same files kept open, as
// ListContainerStats does now.
func BenchmarkCgroupFiles(b *testing.B) {
	dir, _ := makeCgroup(b, "bench-open")
	f := NewCgroupFiles(cgroupRoot, dir, cgroup.V2())
	defer f.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Read(false, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
