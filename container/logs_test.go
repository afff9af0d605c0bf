package container

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	s, err := openLogSink(path)
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
	if err := s.copyStream(streamStdout, &chunkReader{data: []byte("hello\nwor"), n: 3}); err != nil {
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
	if err := s.copyStream(streamStderr, strings.NewReader("\n a b \n")); err != nil {
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
	if err := s.copyStream(streamStdout, &chunkReader{data: []byte(long + "\nend\n"), n: 5000}); err != nil {
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
	for _, stream := range []string{streamStdout, streamStderr} {
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
	s2, err := openLogSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.copyStream(streamStdout, strings.NewReader("more\n")); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, path); len(got) != 2*lines+1 || got[len(got)-1].msg != "more" {
		t.Fatalf("reopen did not append: %d entries", len(got))
	}
}

func TestLogSubscribersSeeRawOutput(t *testing.T) {
	s, err := openLogSink("")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	unsubscribe := s.Subscribe(func(stream string, p []byte) { got.WriteString(stream + ":" + string(p) + "|") })
	if err := s.copyStream(streamStdout, strings.NewReader("a\nb")); err != nil {
		t.Fatal(err)
	}
	unsubscribe()
	if err := s.copyStream(streamStdout, strings.NewReader("unseen")); err != nil {
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
