package stats

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crishim/crishim/internal/cgroup"
)

// BenchmarkReadCgroup reads one real (empty) cgroup's files as
// ListContainerStats does for each running container; it makes the cgroup
// itself, so it needs root.
func BenchmarkReadCgroup(b *testing.B) {
	const root = "/sys/fs/cgroup"
	v2 := cgroup.V2()
	dir := fmt.Sprintf("/crishim-bench-%d", os.Getpid())
	var made []string
	if v2 {
		made = []string{filepath.Join(root, dir)}
	} else {
		for _, c := range []string{"cpuacct", "memory", "pids"} {
			made = append(made, filepath.Join(root, c, dir))
		}
	}
	for _, d := range made {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatalf("make a cgroup to read (needs root): %v", err)
		}
		b.Cleanup(func() { os.Remove(d) })
	}
	if _, err := ReadCgroup(root, dir, v2, false, time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadCgroup(root, dir, v2, false, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
