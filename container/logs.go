package container

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// CRI log format: "<RFC3339Nano time> <stream> <P|F> <message>\n", the
// format the kubelet parses for `kubectl logs`.
const (
	streamStdout = "stdout"
	streamStderr = "stderr"

	tagFull    = "F"
	tagPartial = "P"

	// maxLogLine is where a line without newline is cut into partial
	// entries, so one runaway line cannot grow memory without bound.
	maxLogLine = 16 * 1024
)

// logSink is the destination of one container's output: the CRI log file
// (both streams interleaved line by line) and any live subscribers.
type logSink struct {
	mu   sync.Mutex
	path string
	w    io.WriteCloser // nil when the container has no log file
	now  func() time.Time

	subsMu sync.Mutex
	subs   map[int]func(stream string, p []byte)
	nextID int
}

// openLogSink opens path for appending, creating its directory; an empty
// path discards the log lines (subscribers still see the output).
func openLogSink(path string) (*logSink, error) {
	s := &logSink{path: path, now: time.Now}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *logSink) open() error {
	if s.path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	// O_NOFOLLOW: a symlink planted at the path (the log directory is the
	// kubelet's, rotated under us) must not redirect root's writes.
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	s.w = f
	return nil
}

// Reopen starts a new file at the same path, after the kubelet rotated
// the old one away.
func (s *logSink) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Until the new file is open, output keeps going to the old one.
	old := s.w
	if err := s.open(); err != nil {
		s.w = old
		return err
	}
	if old != nil {
		old.Close()
	}
	return nil
}

// Subscribe registers fn to receive the raw output of both streams as it
// arrives (for attach). fn runs on the copying goroutine and must not
// block. The returned function unsubscribes.
func (s *logSink) Subscribe(fn func(stream string, p []byte)) func() {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	if s.subs == nil {
		s.subs = map[int]func(string, []byte){}
	}
	id := s.nextID
	s.nextID++
	s.subs[id] = fn
	return func() {
		s.subsMu.Lock()
		delete(s.subs, id)
		s.subsMu.Unlock()
	}
}

func (s *logSink) publish(stream string, p []byte) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for _, fn := range s.subs {
		fn(stream, p)
	}
}

// writeLine writes one log entry; the whole entry goes out in one write
// so that the two streams never interleave inside an entry.
func (s *logSink) writeLine(stream, tag string, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	var b bytes.Buffer
	b.Grow(len(msg) + 64)
	b.WriteString(s.now().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(msg)
	b.WriteByte('\n')
	_, err := s.w.Write(b.Bytes())
	return err
}

// Close closes the log file.
func (s *logSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	s.w = nil
	return err
}

// Bounds of copyStream's read buffer.
const (
	minLogRead = 2 * 1024
	maxLogRead = 32 * 1024
)

// copyStream reads r until EOF or error and writes it to the sink as CRI
// log lines of the given stream: complete lines as F, lines longer than
// maxLogLine in P pieces followed by the F rest, and a final unterminated
// line as P.
func (s *logSink) copyStream(stream string, r io.Reader) error {
	// Most containers say little, and each stream's buffer stays pinned
	// while it blocks in Read: 32 KiB for each of two streams was 7 MiB of
	// crishim's heap with 100 quiet pods (make bench). Start small and
	// grow for chatty streams, whose reads fill the buffer.
	buf := make([]byte, minLogRead)
	var pending []byte
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			s.publish(stream, chunk)
			pending = append(pending, chunk...)
			for {
				if i := bytes.IndexByte(pending, '\n'); i >= 0 && i <= maxLogLine {
					if err := s.writeLine(stream, tagFull, pending[:i]); err != nil {
						return err
					}
					pending = pending[i+1:]
					continue
				}
				if len(pending) >= maxLogLine {
					if err := s.writeLine(stream, tagPartial, pending[:maxLogLine]); err != nil {
						return err
					}
					pending = pending[maxLogLine:]
					continue
				}
				break
			}
			// Keep the buffer from pinning an ever-growing backing array.
			pending = append([]byte(nil), pending...)
			if n == len(buf) && len(buf) < maxLogRead {
				buf = make([]byte, 2*len(buf))
			}
		}
		if rerr != nil {
			if len(pending) > 0 {
				if err := s.writeLine(stream, tagPartial, pending); err != nil {
					return err
				}
			}
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}
