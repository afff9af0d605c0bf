package taskio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// CRI log format: "<RFC3339Nano time> <stream> <P|F> <message>\n", the
// format the kubelet parses for `kubectl logs`.
const (
	// Stdout and Stderr name the streams in log lines and to subscribers.
	Stdout = "stdout"
	Stderr = "stderr"

	tagFull    = "F"
	tagPartial = "P"

	// maxLogLine is where a line without newline is cut into partial
	// entries, so one runaway line cannot grow memory without bound.
	maxLogLine = 16 * 1024
)

// logSink is the destination of one container's output: the CRI log file
// (both streams interleaved line by line) and any live subscribers.
//
// Writing the file must never hold up the container: the pump that feeds
// the sink is the only reader of the container's output pipes (and of
// every other container's), so a pump stuck on a failed write (a full
// disk) would block the containers in their next writes for good. A line
// that cannot be written is dropped instead, counted and warned about, and
// every later line tries again.
type logSink struct {
	mu   sync.Mutex
	path string
	f    logFile // nil when the container has no log file
	now  func() time.Time
	// openFile opens the log file at a path; tests put failing files here.
	openFile func(path string) (logFile, error)
	log      *logrus.Entry
	// onDrop, when set, is told the size of each entry that was dropped.
	onDrop func(bytes int)

	// The state of a write failure, guarded by mu.
	failing  bool
	failedAt time.Time
	warnedAt time.Time
	// announced is set when this failure was warned about, so that its
	// end is logged too.
	announced bool
	checkedAt time.Time // the last look whether path still names f
	// torn is set when a failed write left part of an entry at the end of
	// the file that could not be cut off again: the next entry starts on a
	// line of its own.
	torn bool
	// Dropped and not yet reported in crishim's log.
	droppedBytes, droppedLines int64

	subsMu sync.Mutex
	subs   map[int]func(stream string, p []byte)
	nextID int
}

// logFile is an open log file: an *os.File outside tests.
type logFile interface {
	io.WriteCloser
	io.Seeker
	Stat() (os.FileInfo, error)
	Truncate(size int64) error
}

const (
	// logWarnInterval bounds how often one container's failing log is
	// warned about: a full disk fails every line, and crishim's own log
	// is likely on the same disk.
	logWarnInterval = 30 * time.Second
	// logCheckInterval bounds how often a failing sink looks whether its
	// file was replaced or removed under it.
	logCheckInterval = time.Second
)

// openLogSink opens path for appending, creating its directory; an empty
// path discards the log lines (subscribers still see the output). log
// gets the warnings about lines that could not be written, onDrop (when
// not nil) the size of each of them.
func openLogSink(path string, log *logrus.Entry, onDrop func(bytes int)) (*logSink, error) {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	s := &logSink{path: path, now: time.Now, openFile: openLogFile, log: log.WithField("log_path", path), onDrop: onDrop}
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
	f, err := s.openFile(s.path)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	s.f = f
	s.torn = false
	return nil
}

func openLogFile(path string) (logFile, error) {
	// O_NOFOLLOW: a symlink planted at the path (the log directory is the
	// kubelet's, rotated under us) must not redirect root's writes.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Reopen starts a new file at the same path, after the kubelet rotated
// the old one away.
func (s *logSink) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Until the new file is open, output keeps going to the old one.
	old, torn := s.f, s.torn
	if err := s.open(); err != nil {
		s.f, s.torn = old, torn
		return err
	}
	if old != nil {
		// Closing the old file is what gives its space back once the
		// kubelet deletes it: this is how a full disk recovers.
		old.Close()
	}
	return nil
}

// Subscribe registers fn to receive the raw output of both streams as it
// arrives (for attach). fn runs on the pump's goroutine, which reads every
// container's output, and must not block. The returned function
// unsubscribes.
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
// so that the two streams never interleave inside an entry. An entry that
// cannot be written is dropped (see logSink).
func (s *logSink) writeLine(stream, tag string, msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return
	}
	var b bytes.Buffer
	b.Grow(len(msg) + 65)
	if s.torn {
		b.WriteByte('\n')
	}
	b.WriteString(s.now().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(msg)
	b.WriteByte('\n')
	if s.failing {
		s.reopenIfReplaced()
	}
	n, err := s.f.Write(b.Bytes())
	if err != nil {
		s.dropped(b.Len(), n, err)
		return
	}
	s.torn = false
	if s.failing {
		s.resumed()
	}
}

// dropped accounts for an entry of size bytes whose write failed after n
// bytes, and warns at most every logWarnInterval (a disk that fails every
// other write must not flood crishim's log either).
func (s *logSink) dropped(size, n int, err error) {
	if n > 0 {
		s.unwrite(n)
	}
	if s.onDrop != nil {
		s.onDrop(size)
	}
	s.droppedBytes += int64(size)
	s.droppedLines++
	now := s.now()
	if !s.failing {
		s.failing, s.failedAt, s.announced = true, now, false
	}
	if now.Sub(s.warnedAt) < logWarnInterval {
		return
	}
	s.warnedAt, s.announced = now, true
	s.log.WithError(err).WithFields(s.droppedFields()).Warn("cannot write the container's log: dropping its output until writes work again")
}

// droppedFields reports the drops not reported yet.
func (s *logSink) droppedFields() logrus.Fields {
	f := logrus.Fields{"dropped_bytes": s.droppedBytes, "dropped_lines": s.droppedLines}
	s.droppedBytes, s.droppedLines = 0, 0
	return f
}

// unwrite cuts the n bytes of a partly written entry off the end of the
// file, so that the log holds whole entries only; failing that, the next
// entry starts on a new line.
func (s *logSink) unwrite(n int) {
	// The failed write ended at the file offset (O_APPEND moves it to the
	// end of each write). Cut back only while the file still ends there:
	// cut at a size that is stale by then (the file truncated under us to
	// free space), the file would grow by zeros instead.
	end, err := s.f.Seek(0, io.SeekCurrent)
	if err != nil {
		s.torn = true
		return
	}
	st, err := s.f.Stat()
	switch {
	case err != nil:
		s.torn = true
	case st.Size() < end:
		// Truncated under us since the write: the fragment went with it.
	case st.Size() > end:
		// Written to by someone else since: the fragment stays, and the
		// next entry starts on a line of its own.
		s.torn = true
	case s.f.Truncate(end-int64(n)) != nil:
		s.torn = true
	}
}

// resumed ends a write failure. The end of a failure that was not warned
// about is not logged either: its drops go into the next report.
func (s *logSink) resumed() {
	s.failing = false
	if !s.announced {
		return
	}
	s.log.WithFields(s.droppedFields()).WithField("failed_for", s.now().Sub(s.failedAt).Round(time.Millisecond).String()).
		Warn("the container's log is written again after output was dropped")
}

// reopenIfReplaced opens a new file at the path when the file being
// written is no longer there: removing a log file on a full disk frees
// nothing while it is held open, so the sink must let go of it.
func (s *logSink) reopenIfReplaced() {
	now := s.now()
	if now.Sub(s.checkedAt) < logCheckInterval {
		return
	}
	s.checkedAt = now
	cur, err := s.f.Stat()
	if err != nil {
		return
	}
	st, err := os.Lstat(s.path)
	if err == nil && os.SameFile(cur, st) {
		return
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return
	}
	// No MkdirAll: a log directory that is gone was removed on purpose.
	f, err := s.openFile(s.path)
	if err != nil {
		return
	}
	s.f.Close()
	s.f, s.torn = f, false
	s.log.Info("the container's log file was removed or replaced while writes failed: writing to a new one at its path")
}

// Close closes the log file.
func (s *logSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	if s.droppedLines > 0 {
		s.log.WithFields(s.droppedFields()).Warn("the container's output ended with dropped log lines not reported yet")
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// streamLines turns one output stream, as it is read, into CRI log entries
// in its sink: complete lines as F, lines longer than maxLogLine in P
// pieces followed by the F rest, and what is left unterminated at the end
// as P. Failing writes do not stop it (see logSink). Not safe for
// concurrent use: one reader feeds it.
type streamLines struct {
	sink   *logSink
	stream string
	// pending is the start of a line not ended yet; nil between lines,
	// which is how a quiet container's stream stays without a buffer.
	pending []byte
}

// write takes the next chunk read. The chunk is not kept: the reader may
// reuse its buffer.
func (l *streamLines) write(chunk []byte) {
	l.sink.publish(l.stream, chunk)
	data := chunk
	if len(l.pending) > 0 {
		data = append(l.pending, chunk...)
	}
	for {
		if i := bytes.IndexByte(data, '\n'); i >= 0 && i <= maxLogLine {
			l.sink.writeLine(l.stream, tagFull, data[:i])
			data = data[i+1:]
			continue
		}
		if len(data) >= maxLogLine {
			l.sink.writeLine(l.stream, tagPartial, data[:maxLogLine])
			data = data[maxLogLine:]
			continue
		}
		break
	}
	// A copy, so that the line's start pins neither the reader's buffer
	// nor an ever-growing backing array.
	l.pending = nil
	if len(data) > 0 {
		l.pending = append([]byte(nil), data...)
	}
}

// end writes what is left of an unterminated line, at the end of the
// stream.
func (l *streamLines) end() {
	if len(l.pending) > 0 {
		l.sink.writeLine(l.stream, tagPartial, l.pending)
	}
	l.pending = nil
}
