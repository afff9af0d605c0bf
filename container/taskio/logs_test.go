package taskio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

type logEntry struct {
	time   time.Time
	stream string
	tag    string
	msg    string
}

func readLog(t *testing.T, path string) []logEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []logEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) != 4 {
			t.Fatalf("malformed log line %q", sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			t.Fatalf("bad timestamp in %q: %v", sc.Text(), err)
		}
		out = append(out, logEntry{ts, parts[1], parts[2], parts[3]})
	}
	return out
}

func newTestSink(t *testing.T) (*logSink, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pod", "ctr", "0.log")
	s, err := openLogSink(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// chunkReader hands out its data in fixed pieces, like a pipe would.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := min(r.n, len(p), len(r.data))
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

func TestLogFullLinesAcrossReads(t *testing.T) {
	s, path := newTestSink(t)
	if err := s.copyStream(Stdout, &chunkReader{data: []byte("hello\nwor"), n: 3}); err != nil {
		t.Fatal(err)
	}
	got := readLog(t, path)
	want := []logEntry{{stream: "stdout", tag: "F", msg: "hello"}, {stream: "stdout", tag: "P", msg: "wor"}}
	assertEntries(t, got, want)
	for _, e := range got {
		if time.Since(e.time) > time.Minute || e.time.IsZero() {
			t.Fatalf("timestamp %v is not now", e.time)
		}
	}
}

func TestLogEmptyLineAndSpaces(t *testing.T) {
	s, path := newTestSink(t)
	if err := s.copyStream(Stderr, strings.NewReader("\n a b \n")); err != nil {
		t.Fatal(err)
	}
	assertEntries(t, readLog(t, path), []logEntry{
		{stream: "stderr", tag: "F", msg: ""},
		{stream: "stderr", tag: "F", msg: " a b "},
	})
}

func TestLogLongLineSplit(t *testing.T) {
	s, path := newTestSink(t)
	long := strings.Repeat("x", 2*maxLogLine+10)
	if err := s.copyStream(Stdout, &chunkReader{data: []byte(long + "\nend\n"), n: 5000}); err != nil {
		t.Fatal(err)
	}
	assertEntries(t, readLog(t, path), []logEntry{
		{stream: "stdout", tag: "P", msg: long[:maxLogLine]},
		{stream: "stdout", tag: "P", msg: long[maxLogLine : 2*maxLogLine]},
		{stream: "stdout", tag: "F", msg: long[2*maxLogLine:]},
		{stream: "stdout", tag: "F", msg: "end"},
	})
}

func TestLogBothStreamsOneFileAppends(t *testing.T) {
	s, path := newTestSink(t)
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const lines = 200
	for _, stream := range []string{Stdout, Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b strings.Builder
			for i := 0; i < lines; i++ {
				b.WriteString(stream + " line\n")
			}
			if err := s.copyStream(stream, &chunkReader{data: []byte(b.String()), n: 7}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got := readLog(t, path)
	if len(got) != 2*lines {
		t.Fatalf("%d entries, want %d", len(got), 2*lines)
	}
	for _, e := range got {
		if e.tag != "F" || e.msg != e.stream+" line" {
			t.Fatalf("entry %+v mixes streams", e)
		}
	}

	// A reopened sink appends rather than truncating.
	s.Close()
	s2, err := openLogSink(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.copyStream(Stdout, strings.NewReader("more\n")); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, path); len(got) != 2*lines+1 || got[len(got)-1].msg != "more" {
		t.Fatalf("reopen did not append: %d entries", len(got))
	}
}

func TestLogSubscribersSeeRawOutput(t *testing.T) {
	s, err := openLogSink("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	unsubscribe := s.Subscribe(func(stream string, p []byte) { got.WriteString(stream + ":" + string(p) + "|") })
	if err := s.copyStream(Stdout, strings.NewReader("a\nb")); err != nil {
		t.Fatal(err)
	}
	unsubscribe()
	if err := s.copyStream(Stdout, strings.NewReader("unseen")); err != nil {
		t.Fatal(err)
	}
	if got.String() != "stdout:a\nb|" {
		t.Fatalf("subscriber saw %q", got.String())
	}
}

func assertEntries(t *testing.T, got, want []logEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].stream != want[i].stream || got[i].tag != want[i].tag || got[i].msg != want[i].msg {
			t.Fatalf("entry %d = %s %s %.40q, want %s %s %.40q", i, got[i].stream, got[i].tag, got[i].msg, want[i].stream, want[i].tag, want[i].msg)
		}
	}
}

// diskState makes a testFile's writes fail the way a full disk does:
// ENOSPC, after writing the first partial bytes of the entry.
type diskState struct {
	full       bool
	partial    int
	noTruncate bool
}

// testFile is a real log file whose writes fail while its disk is full.
type testFile struct {
	*os.File
	d *diskState
}

func (f testFile) Write(p []byte) (int, error) {
	if !f.d.full {
		return f.File.Write(p)
	}
	n := 0
	if f.d.partial > 0 {
		n, _ = f.File.Write(p[:min(f.d.partial, len(p))])
	}
	return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f testFile) Truncate(size int64) error {
	if f.d.noTruncate {
		return &fs.PathError{Op: "truncate", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Truncate(size)
}

// stepReader hands out one chunk per Read, running the chunk's step first.
type stepReader []readStep

type readStep struct {
	before func()
	data   string
}

func (r *stepReader) Read(p []byte) (int, error) {
	if len(*r) == 0 {
		return 0, io.EOF
	}
	s := (*r)[0]
	*r = (*r)[1:]
	if s.before != nil {
		s.before()
	}
	return copy(p, s.data), nil
}

type flakySink struct {
	*logSink
	path    string
	disk    *diskState
	hook    *logtest.Hook
	clock   time.Time
	drops   []int
	entries int // entry size: every test line is "x" plus a fixed header
}

// newFlakySink is a sink on a testFile with a clock and a log of its own.
func newFlakySink(t *testing.T) *flakySink {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	fs := &flakySink{
		path:  filepath.Join(t.TempDir(), "0.log"),
		disk:  &diskState{},
		hook:  hook,
		clock: time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC),
	}
	s := &logSink{path: fs.path, log: logrus.NewEntry(logger), onDrop: func(n int) { fs.drops = append(fs.drops, n) }}
	s.now = func() time.Time { return fs.clock }
	s.openFile = func(path string) (logFile, error) {
		f, err := openLogFile(path)
		if err != nil {
			return nil, err
		}
		return testFile{f.(*os.File), fs.disk}, nil
	}
	if err := s.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	fs.logSink = s
	return fs
}

func (fs *flakySink) warnings() []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range fs.hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			out = append(out, e)
		}
	}
	return out
}

// entrySize is the size of the entry of a one-byte stdout line.
var entrySize = len("2026-01-02T03:04:05.6Z stdout F x\n")

func TestLogWriteFailureKeepsDrainingAndResumes(t *testing.T) {
	s := newFlakySink(t)
	full := func(v bool) func() { return func() { s.disk.full = v } }
	r := &stepReader{
		{data: "a\n"},
		{before: full(true), data: "b\nc\n"},
		{data: "d\n"},
		{before: full(false), data: "e\n"},
		{data: "f\n"},
	}
	if err := s.copyStream(Stdout, r); err != nil {
		t.Fatalf("copyStream: %v", err)
	}
	if len(*r) != 0 {
		t.Fatalf("copyStream stopped with %d chunks unread", len(*r))
	}
	assertEntries(t, readLog(t, s.path), []logEntry{
		{stream: "stdout", tag: "F", msg: "a"},
		{stream: "stdout", tag: "F", msg: "e"},
		{stream: "stdout", tag: "F", msg: "f"},
	})
	if len(s.drops) != 3 || s.drops[0] != entrySize {
		t.Errorf("drops reported %v, want 3 of %d bytes", s.drops, entrySize)
	}
	w := s.warnings()
	if len(w) != 2 {
		t.Fatalf("%d warnings, want one when writes fail and one when they work again: %v", len(w), w)
	}
	if err, _ := w[0].Data[logrus.ErrorKey].(error); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("first warning's error %v, want ENOSPC", w[0].Data[logrus.ErrorKey])
	}
	// Each warning reports the drops since the one before.
	if w[0].Data["dropped_lines"] != int64(1) || w[1].Data["dropped_lines"] != int64(2) || w[1].Data["dropped_bytes"] != int64(2*entrySize) {
		t.Errorf("warnings %v and %v: want 1 line dropped, then 2 lines of %d bytes", w[0].Data, w[1].Data, 2*entrySize)
	}
}

func TestLogPartialWriteLeavesWholeEntries(t *testing.T) {
	for _, noTruncate := range []bool{false, true} {
		t.Run(fmt.Sprintf("noTruncate=%v", noTruncate), func(t *testing.T) {
			s := newFlakySink(t)
			s.disk.partial, s.disk.noTruncate = 10, noTruncate
			r := &stepReader{
				{data: "a\n"},
				{before: func() { s.disk.full = true }, data: "b\nc\n"},
				{before: func() { s.disk.full = false }, data: "d\n"},
			}
			if err := s.copyStream(Stdout, r); err != nil {
				t.Fatal(err)
			}
			if noTruncate {
				// Two fragments of 10 bytes that stay, the second one
				// starting with the newline that ends the first: each is a
				// line of its own, and d is whole.
				data, err := os.ReadFile(s.path)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
				if len(lines) != 4 || !strings.HasSuffix(lines[0], " stdout F a") || len(lines[1]) != 10 || len(lines[2]) != 9 || !strings.HasSuffix(lines[3], " stdout F d") {
					t.Fatalf("log %q: want entry a, two fragment lines, entry d", data)
				}
				return
			}
			assertEntries(t, readLog(t, s.path), []logEntry{
				{stream: "stdout", tag: "F", msg: "a"},
				{stream: "stdout", tag: "F", msg: "d"},
			})
		})
	}
}

func TestLogWriteFailureWarnsAtBoundedRate(t *testing.T) {
	s := newFlakySink(t)
	s.disk.full = true
	// 100 seconds of one failing line a second.
	var r stepReader
	for i := 0; i < 100; i++ {
		r = append(r, readStep{before: func() { s.clock = s.clock.Add(time.Second) }, data: "x\n"})
	}
	if err := s.copyStream(Stdout, &r); err != nil {
		t.Fatal(err)
	}
	if got, want := len(s.warnings()), 1+99/int(logWarnInterval/time.Second); got != want {
		t.Fatalf("%d warnings over 100s, want %d", got, want)
	}
	s.assertAllReported(t, 100)
}

// A disk that fails every other write, for 100 seconds.
func TestLogFlappingWritesWarnAtBoundedRate(t *testing.T) {
	s := newFlakySink(t)
	var r stepReader
	for i := 0; i < 200; i++ {
		r = append(r, readStep{before: func() {
			s.clock = s.clock.Add(500 * time.Millisecond)
			s.disk.full = !s.disk.full
		}, data: "x\n"})
	}
	if err := s.copyStream(Stdout, &r); err != nil {
		t.Fatal(err)
	}
	// Each announced failure has its warning and the note of its end.
	if got, want := len(s.warnings()), 2*(1+99/int(logWarnInterval/time.Second)); got != want {
		t.Fatalf("%d warnings over 100s, want %d", got, want)
	}
	s.assertAllReported(t, 100)
}

// assertAllReported closes the sink and checks that its warnings report
// n dropped lines in all, as did the metric.
func (fs *flakySink) assertAllReported(t *testing.T, n int) {
	t.Helper()
	fs.Close()
	var lines int64
	for _, e := range fs.warnings() {
		lines += e.Data["dropped_lines"].(int64)
	}
	if lines != int64(n) || len(fs.drops) != n {
		t.Errorf("warnings report %d dropped lines, the metric %d; want %d", lines, len(fs.drops), n)
	}
}

func TestLogReopenRecoversFromFailingFile(t *testing.T) {
	s := newFlakySink(t)
	s.disk.full = true
	s.writeLine(Stdout, tagFull, []byte("lost"))
	// The kubelet rotates: rename, reopen. The new file has room (the old
	// one, when deleted, frees its space only once closed).
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		t.Fatal(err)
	}
	s.disk.full = false
	old := s.f
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write to the old file after Reopen: %v, want it closed", err)
	}
	s.writeLine(Stdout, tagFull, []byte("kept"))
	assertEntries(t, readLog(t, s.path), []logEntry{{stream: "stdout", tag: "F", msg: "kept"}})
	if w := s.warnings(); len(w) != 2 || w[0].Data["dropped_lines"] != int64(1) || !strings.Contains(w[1].Message, "written again") {
		t.Errorf("warnings %v: want the failure with 1 dropped line, then the recovery", w)
	}
}

func TestLogFailingSinkReopensRemovedFile(t *testing.T) {
	s := newFlakySink(t)
	s.disk.full = true
	s.writeLine(Stdout, tagFull, []byte("lost"))
	// Removing the log frees nothing while crishim holds it open: a
	// failing sink looks for this and opens a new file at the path.
	if err := os.Remove(s.path); err != nil {
		t.Fatal(err)
	}
	s.disk.full = false
	s.clock = s.clock.Add(logCheckInterval)
	s.writeLine(Stdout, tagFull, []byte("kept"))
	assertEntries(t, readLog(t, s.path), []logEntry{{stream: "stdout", tag: "F", msg: "kept"}})

	// A healthy sink leaves a removed file alone: rotation is the
	// kubelet's, through Reopen.
	if err := os.Remove(s.path); err != nil {
		t.Fatal(err)
	}
	s.clock = s.clock.Add(logCheckInterval)
	s.writeLine(Stdout, tagFull, []byte("unlinked"))
	if _, err := os.Stat(s.path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a healthy sink recreated its removed file: %v", err)
	}
}

// copyStream feeds r to the sink as the pump feeds a FIFO: read by read,
// until EOF or a read error.
func (s *logSink) copyStream(stream string, r io.Reader) error {
	lines := streamLines{sink: s, stream: stream}
	defer lines.end()
	buf := make([]byte, 2048)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			lines.write(buf[:n])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
