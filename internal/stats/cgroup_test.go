package stats

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crishim/crishim/internal/cgroup"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadCgroupV1(t *testing.T) {
	root := t.TempDir()
	dir := "/kubepods/besteffort/pod1/c1"
	writeFiles(t, root, map[string]string{
		"cpuacct" + dir + "/cpuacct.usage":        "123456789\n",
		"memory" + dir + "/memory.usage_in_bytes": "10485760\n",
		// cgroup v1's "no limit": a page-rounded MaxInt64.
		"memory" + dir + "/memory.limit_in_bytes": "9223372036854771712\n",
		"memory" + dir + "/memory.stat":           "cache 100\nrss 200\npgfault 31\npgmajfault 2\ntotal_rss 4096\ntotal_inactive_file 1048576\n",
		"pids" + dir + "/pids.current":            "3\n",
	})
	at := time.Unix(100, 0)
	got, err := ReadCgroup(root, dir, false, true, at)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{At: at, CPU: 123456789, MemoryUsage: 10485760, WorkingSet: 10485760 - 1048576, RSS: 4096,
		PageFaults: 31, MajorPageFaults: 2, Limit: 0, Processes: 3}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}

	writeFiles(t, root, map[string]string{"memory" + dir + "/memory.limit_in_bytes": "67108864\n"})
	if got, _ := ReadCgroup(root, dir, false, true, at); got.Limit != 64<<20 {
		t.Errorf("limit %d, want %d", got.Limit, 64<<20)
	}
	// A missing controller is an error, for the caller to ask containerd.
	if err := os.Remove(filepath.Join(root, "pids", dir, "pids.current")); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCgroup(root, dir, false, true, at); err == nil {
		t.Error("no error without pids.current")
	}
	// A container's sample has no process count, so it does not need it.
	got, err = ReadCgroup(root, dir, false, false, at)
	if err != nil {
		t.Fatalf("without pids.current, not asking for processes: %v", err)
	}
	if got.Processes != 0 || got.CPU != 123456789 {
		t.Errorf("without processes: got %+v", got)
	}
}

func TestReadCgroupV2(t *testing.T) {
	root := t.TempDir()
	dir := "/kubepods.slice/c1.scope"
	writeFiles(t, root, map[string]string{
		dir + "/cpu.stat":       "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\n",
		dir + "/memory.current": "2097152\n",
		dir + "/memory.max":     "max\n",
		dir + "/memory.stat":    "anon 8192\nfile 4096\ninactive_file 4096\npgfault 7\npgmajfault 1\n",
		dir + "/pids.current":   "1\n",
	})
	at := time.Unix(200, 0)
	got, err := ReadCgroup(root, dir, true, true, at)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{At: at, CPU: 5000000, MemoryUsage: 2097152, WorkingSet: 2097152 - 4096, RSS: 8192,
		PageFaults: 7, MajorPageFaults: 1, Limit: 0, Processes: 1}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if _, err := ReadCgroup(root, "/gone", true, true, at); err == nil {
		t.Error("no error for a missing cgroup")
	}
}

// TestCgroupFilesKeptOpen reads a real cgroup through files kept open: a
// limit set after the first read shows in the next one (each read makes
// the kernel generate the file again), the cgroup's removal is an error,
// and Close gives every kept descriptor back.
func TestCgroupFilesKeptOpen(t *testing.T) {
	v2 := cgroup.V2()
	dir, made := makeCgroup(t, "test-open")
	before := kept.Load()
	f := NewCgroupFiles(cgroupRoot, dir, v2)
	first, err := f.Read(true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if first.Limit != 0 {
		t.Fatalf("a new cgroup's limit reads %d, want 0 (none)", first.Limit)
	}
	if n := kept.Load() - before; n != int64(counters) {
		t.Fatalf("%d files kept open after a read with processes, want %d", n, counters)
	}
	limitFile := filepath.Join(cgroupRoot, "memory", dir, "memory.limit_in_bytes")
	if v2 {
		limitFile = filepath.Join(cgroupRoot, dir, "memory.max")
	}
	if err := os.WriteFile(limitFile, []byte("67108864"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := f.Read(false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if again.Limit != 64<<20 {
		t.Fatalf("limit after setting 64 MiB reads %d through the open file", again.Limit)
	}
	if n := kept.Load() - before; n != int64(counters) {
		t.Fatalf("%d files kept open after a second read, want still %d", n, counters)
	}
	for _, d := range made {
		if err := os.Remove(d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Read(false, time.Now()); err == nil {
		t.Fatal("reading a removed cgroup through its open files succeeded")
	}
	f.Close()
	if n := kept.Load() - before; n != 0 {
		t.Fatalf("%d files still counted open after Close", n)
	}
	if _, err := f.Read(false, time.Now()); err != errClosed {
		t.Fatalf("Read after Close: %v, want errClosed", err)
	}
}
