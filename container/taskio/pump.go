package taskio

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// pump reads the output FIFOs of all of crishim's containers on one
// goroutine waiting in epoll, rather than on a goroutine per stream parked
// in a read. A node's containers mostly say nothing, and each parked
// reader held ~10 KiB of stack and a buffer of its own: with 500 pods
// (1000 streams) that was ~10 MiB of crishim's ~80 MiB, for no work done.
//
// Reads are non-blocking; the log writes and the live subscribers run on
// the one goroutine too, so a write that stalls holds up every
// container's output, not only its own. The logs all live in the
// kubelet's log directory, on one disk, whose stalls reach every writer
// alike.
type pump struct {
	epfd int

	mu      sync.Mutex
	streams map[uint64]*pumped
	lastKey uint64
}

// pumped is one output FIFO being read by the pump.
type pumped struct {
	pump *pump
	key  uint64
	// mu is held while the pump reads fd and while the stream is closed,
	// so a descriptor is never read after it was closed (and its number
	// possibly reused).
	mu    sync.Mutex
	fd    int // -1 once closed
	lines streamLines
	// done is called once, when the stream ended or was closed.
	done func()
}

const (
	pumpReadSize = 32 * 1024
	// maxReadsPerWake bounds how much of one stream is read before the
	// others get their turn: a container writing without pause never
	// empties its pipe. Epoll is level-triggered, so the rest waits for
	// the next round.
	maxReadsPerWake = 4
)

// outputPump is the process's pump, started on first use.
var outputPump = sync.OnceValues(func() (*pump, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll instance for container output: %w", err)
	}
	// The pump waits for its epoll descriptor in Go's own poller, as a
	// socket's reader does, not in a blocking epoll_wait, which would
	// hold an OS thread for good and, each time it is entered, the P it
	// ran on until the runtime's monitor takes that back.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("make container output's epoll instance non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "container-output-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("watch container output's epoll instance: %w", err)
	}
	p := &pump{epfd: epfd, streams: map[uint64]*pumped{}}
	go p.run(rc)
	return p, nil
})

// add opens the FIFO at path (making it when missing) and feeds what is
// written to it into lines until every writer has closed it or close is
// called; done is then called, once.
//
// The FIFO is opened non-blocking, so without waiting for the shim to
// open its end. Until a writer has come, the FIFO reports nothing to
// epoll, and nothing is read from it: read returns 0 both before the first
// writer and after the last, and only the second is the end.
func (p *pump) add(path string, lines streamLines, done func()) (*pumped, error) {
	if err := unix.Mkfifo(path, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create fifo %s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open fifo %s: %w", path, err)
	}
	s := &pumped{pump: p, fd: fd, lines: lines, done: done}
	p.mu.Lock()
	p.lastKey++
	s.key = p.lastKey
	p.streams[s.key] = s
	p.mu.Unlock()
	// The key, not the descriptor, identifies the stream to epoll: an
	// event can be reported for a stream closed meanwhile, whose number
	// a new stream may have by then.
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	ev.Fd, ev.Pad = int32(uint32(s.key)), int32(uint32(s.key>>32))
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.forget(s.key)
		unix.Close(fd)
		return nil, fmt.Errorf("watch fifo %s: %w", path, err)
	}
	return s, nil
}

func (p *pump) forget(key uint64) {
	p.mu.Lock()
	delete(p.streams, key)
	p.mu.Unlock()
}

// run handles the streams epoll reports ready, for the process's
// lifetime. rc holds the epoll descriptor's file, and so keeps it open.
func (p *pump) run(rc syscall.RawConn) {
	buf := make([]byte, pumpReadSize)
	events := make([]unix.EpollEvent, 64)
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			// Nothing ready: park until the poller sees the epoll
			// descriptor readable.
			return n > 0 || werr != nil
		})
		if err == nil && werr != nil && !errors.Is(werr, unix.EINTR) {
			err = werr
		}
		if err != nil {
			// Not expected with a valid epoll descriptor and buffer;
			// should it happen, output waits in the pipes, not lost.
			logrus.WithError(err).Error("wait for container output")
			time.Sleep(time.Second)
			continue
		}
		for _, ev := range events[:max(n, 0)] {
			key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			s := p.streams[key]
			p.mu.Unlock()
			if s != nil {
				s.readReady(buf)
			}
		}
	}
}

// readReady reads what the FIFO holds, up to maxReadsPerWake buffers.
func (s *pumped) readReady(buf []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range maxReadsPerWake {
		if s.fd < 0 {
			return
		}
		n, err := unix.Read(s.fd, buf)
		switch {
		case n > 0:
			s.lines.write(buf[:n])
			if n < len(buf) {
				// Most likely empty now; if not, or if the writer left,
				// epoll says so again.
				return
			}
		case err == nil:
			// Read returns 0 only once every writer closed the FIFO:
			// epoll reports nothing before the first one came.
			s.closeLocked()
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			return
		default:
			s.lines.sink.log.WithError(err).WithField("stream", s.lines.stream).Debug("output copy ended on a read error")
			s.closeLocked()
		}
	}
}

// close stops reading the stream: what is left of an unterminated line
// is written, and done called. Output still in the FIFO is not read.
func (s *pumped) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *pumped) closeLocked() {
	if s.fd < 0 {
		return
	}
	p := s.pump
	p.forget(s.key)
	// Closing alone leaves the registration in place while a duplicate
	// of the descriptor lives; removing it first does not rely on there
	// being none.
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
	unix.Close(s.fd)
	s.fd = -1
	s.lines.end()
	s.done()
}
