package taskio

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// openTestIO opens the IO of a container without stdin in a directory of
// its own, its log in that directory.
func openTestIO(t testing.TB) (tio *IO, dir, logPath string) {
	t.Helper()
	dir = t.TempDir()
	logPath = filepath.Join(dir, "ctr.log")
	tio, err := Open(FIFOs(dir, false, false), logPath, logrus.NewEntry(logrus.New()), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tio.Shut)
	return tio, dir, logPath
}

// openWriter opens the writing end of one of dir's output FIFOs, as the
// shim does.
func openWriter(t testing.TB, dir, stream string) *os.File {
	t.Helper()
	w, err := os.OpenFile(filepath.Join(dir, stream), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func write(t *testing.T, w *os.File, s string) {
	t.Helper()
	if _, err := w.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// entriesOf returns the log's entries of one stream, in order.
func entriesOf(t *testing.T, path, stream string) []logEntry {
	t.Helper()
	var out []logEntry
	for _, e := range readLog(t, path) {
		if e.stream == stream {
			out = append(out, e)
		}
	}
	return out
}

// The output is copied until every writer has closed its FIFO, and not
// ended before the first writer came: the shim opens its end after the
// IO is open, and a FIFO without writers reads as empty either way.
func TestPumpCopiesUntilWritersLeave(t *testing.T) {
	tio, dir, logPath := openTestIO(t)
	if tio.Drain(200 * time.Millisecond) {
		t.Fatal("output ended before any writer opened the FIFOs")
	}
	out, errOut := openWriter(t, dir, Stdout), openWriter(t, dir, Stderr)
	write(t, out, "a\n")
	write(t, errOut, "e\n")
	write(t, out, "b")
	out.Close()
	errOut.Close()
	if !tio.Drain(10 * time.Second) {
		t.Fatal("output did not end within 10s of both writers closing")
	}
	assertEntries(t, entriesOf(t, logPath, Stdout), []logEntry{
		{stream: Stdout, tag: tagFull, msg: "a"},
		{stream: Stdout, tag: tagPartial, msg: "b"},
	})
	assertEntries(t, entriesOf(t, logPath, Stderr), []logEntry{{stream: Stderr, tag: tagFull, msg: "e"}})
}

// Shut ends a copy whose writer stays (a process left a child holding the
// pipe), keeping what was read of an unterminated line.
func TestPumpShutWithWriterLeft(t *testing.T) {
	tio, dir, logPath := openTestIO(t)
	// The subscriber runs on the pump, which serves every container of
	// this test binary: it must not block, even should the output come in
	// more than one read.
	read := make(chan struct{}, 1)
	tio.Subscribe(func(string, []byte) {
		select {
		case read <- struct{}{}:
		default:
		}
	})
	w := openWriter(t, dir, Stdout)
	write(t, w, "partial")
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("output not read within 10s")
	}
	tio.Shut()
	assertEntries(t, readLog(t, logPath), []logEntry{{stream: Stdout, tag: tagPartial, msg: "partial"}})
	if !tio.Drain(time.Second) {
		t.Error("Shut left the copy running")
	}
}

// A restarted crishim opens the FIFOs of a running container again while
// the shim holds their writing ends; the copy picks up from there.
func TestPumpReopenWithWriterConnected(t *testing.T) {
	tio, dir, firstLog := openTestIO(t)
	w := openWriter(t, dir, Stdout)
	write(t, w, "before\n")
	if !waitFor(func() bool { b, _ := os.ReadFile(firstLog); return bytes.Contains(b, []byte("before")) }) {
		t.Fatal("first line not logged within 10s")
	}
	tio.Shut()

	logPath := filepath.Join(dir, "again.log")
	again, err := Open(FIFOs(dir, false, false), logPath, logrus.NewEntry(logrus.New()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Shut()
	write(t, w, "after\n")
	w.Close()
	// Stderr's writer never came; its end is not awaited here.
	if !waitFor(func() bool { return len(readLog(t, logPath)) > 0 }) {
		t.Fatal("line written after reopening not logged within 10s")
	}
	assertEntries(t, readLog(t, logPath), []logEntry{{stream: Stdout, tag: tagFull, msg: "after"}})
}

// Many containers' output goes through the one pump, each line to its own
// log, and a container writing without pause does not keep the others'
// output from being read.
func TestPumpManyStreamsAndAFlood(t *testing.T) {
	// Its lines are split but not written anywhere: a log of its own
	// would fill the disk at the pump's speed.
	floodDir := t.TempDir()
	flood, err := Open(FIFOs(floodDir, false, false), "", logrus.NewEntry(logrus.New()), nil)
	if err != nil {
		t.Fatal(err)
	}
	fw := openWriter(t, floodDir, Stdout)
	stop := make(chan struct{})
	var flooding sync.WaitGroup
	flooding.Add(1)
	go func() {
		defer flooding.Done()
		line := strings.Repeat("x", 1000) + "\n"
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := fw.WriteString(line); err != nil {
				return
			}
		}
	}()
	defer func() {
		close(stop)
		flooding.Wait()
		flood.Shut()
	}()

	const containers, lines = 50, 20
	type quiet struct {
		tio     *IO
		dir     string
		logPath string
	}
	qs := make([]quiet, containers)
	for i := range qs {
		qs[i].tio, qs[i].dir, qs[i].logPath = openTestIO(t)
	}
	var writers sync.WaitGroup
	for i, q := range qs {
		out, errOut := openWriter(t, q.dir, Stdout), openWriter(t, q.dir, Stderr)
		writers.Add(1)
		go func() {
			defer writers.Done()
			for n := range lines {
				fmt.Fprintf(out, "%d %d\n", i, n)
			}
			out.Close()
			errOut.Close()
		}()
	}
	writers.Wait()
	for i, q := range qs {
		if !q.tio.Drain(20 * time.Second) {
			t.Fatalf("container %d: output not copied within 20s while another container floods its log", i)
		}
		var want []logEntry
		for n := range lines {
			want = append(want, logEntry{stream: Stdout, tag: tagFull, msg: fmt.Sprintf("%d %d", i, n)})
		}
		assertEntries(t, readLog(t, q.logPath), want)
	}
}

func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// One round reads at most maxReadsPerWake buffers of a stream, so that a
// container whose pipe never empties leaves the pump to the others.
func TestPumpRoundReadsBounded(t *testing.T) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	const buffered = (maxReadsPerWake + 2) * pumpReadSize
	if _, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, 2*buffered); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Write(fds[1], bytes.Repeat([]byte("x\n"), buffered/2)); n != buffered || err != nil {
		t.Fatalf("wrote %d bytes, %v; want %d", n, err, buffered)
	}
	sink, err := openLogSink("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	read := 0
	sink.Subscribe(func(_ string, p []byte) { read += len(p) })
	// Not added to the pump: this test is the only reader.
	s := &pumped{fd: fds[0], lines: streamLines{sink: sink, stream: Stdout}, done: func() { t.Error("stream ended while its writer is open") }}
	s.readReady(make([]byte, pumpReadSize))
	if read != maxReadsPerWake*pumpReadSize {
		t.Fatalf("one round read %d bytes of %d buffered, want %d", read, buffered, maxReadsPerWake*pumpReadSize)
	}
	s.readReady(make([]byte, pumpReadSize))
	if read != buffered {
		t.Fatalf("two rounds read %d bytes of %d buffered", read, buffered)
	}
}
