package lifecycle

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/sirupsen/logrus"
)

// Process is what a stop loop needs from a running container.
type Process interface {
	// Signal delivers sig to the container's main process. An
	// errdefs.ErrNotFound means the process is already gone.
	Signal(ctx context.Context, sig syscall.Signal) error
}

// StopRequest describes one call to stop a container.
type StopRequest struct {
	ID      string
	Process Process
	// Exited is closed by the container's owner once the exit has been
	// recorded, so that Stop returns only when the status says EXITED.
	Exited <-chan struct{}
	// Signal is the graceful stop signal; Grace how long to wait for it.
	Signal syscall.Signal
	Grace  time.Duration
}

// Stopper runs at most one stop loop per container. The loop belongs to
// the Stopper, not to the request that started it: a client that gives up
// waiting must not turn a graceful stop into a kill (or abandon the kill).
type Stopper struct {
	// KillRetry is how often SIGKILL is repeated while a killed container
	// has not exited yet (a kill can race with a process that is still
	// starting up).
	KillRetry time.Duration
	// SignalTimeout bounds each call to Process.Signal.
	SignalTimeout time.Duration

	mu    sync.Mutex
	loops map[string]*stopLoop
}

// NewStopper returns a Stopper with production timings.
func NewStopper() *Stopper {
	return &Stopper{KillRetry: 5 * time.Second, SignalTimeout: 10 * time.Second, loops: map[string]*stopLoop{}}
}

type stopLoop struct {
	req StopRequest
	// deadline is when SIGKILL is due; guarded by Stopper.mu.
	deadline time.Time
	// sooner wakes the loop when a later request shortens the deadline.
	sooner chan struct{}
}

// Stop makes sure container req.ID is on its way down and waits until it
// has exited or ctx ends. A stop loop already running for the container is
// reused; its deadline only ever moves closer.
func (s *Stopper) Stop(ctx context.Context, req StopRequest) error {
	select {
	case <-req.Exited:
		return nil
	default:
	}
	deadline := time.Now().Add(req.Grace)
	s.mu.Lock()
	if s.loops == nil {
		s.loops = map[string]*stopLoop{}
	}
	l, running := s.loops[req.ID]
	if running {
		if deadline.Before(l.deadline) {
			l.deadline = deadline
			select {
			case l.sooner <- struct{}{}:
			default:
			}
		}
		// Wait on the running loop's container, the one it will see exit.
		req.Exited = l.req.Exited
	} else {
		l = &stopLoop{req: req, deadline: deadline, sooner: make(chan struct{}, 1)}
		s.loops[req.ID] = l
		go s.run(l)
	}
	s.mu.Unlock()

	select {
	case <-req.Exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stopping reports whether a stop loop is running for id.
func (s *Stopper) Stopping(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.loops[id]
	return ok
}

func (s *Stopper) run(l *stopLoop) {
	log := logrus.WithField("container", l.req.ID)
	defer func() {
		s.mu.Lock()
		delete(s.loops, l.req.ID)
		s.mu.Unlock()
	}()

	graceful := l.req.Signal != 0 && l.req.Signal != syscall.SIGKILL && l.req.Grace > 0
	if graceful {
		log.WithField("signal", l.req.Signal).Debug("sending stop signal")
		if err := s.signal(l.req.Process, l.req.Signal); err != nil {
			if !errors.Is(err, errdefs.ErrNotFound) {
				// The grace period only means something if the signal
				// arrived; waiting it out would just delay the kill.
				log.WithError(err).Warn("stop signal failed; killing")
				s.mu.Lock()
				l.deadline = time.Now()
				s.mu.Unlock()
			}
		}
	}

	killed := false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		s.mu.Lock()
		due := l.deadline
		s.mu.Unlock()
		wait := time.Until(due)
		if killed {
			wait = s.KillRetry
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wait, 0))

		select {
		case <-l.req.Exited:
			return
		case <-l.sooner:
			continue
		case <-timer.C:
		}
		if !killed || s.KillRetry > 0 {
			log.Debug("grace period over; sending SIGKILL")
			if err := s.signal(l.req.Process, syscall.SIGKILL); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				log.WithError(err).Warn("SIGKILL failed")
			}
		}
		killed = true
		if s.KillRetry <= 0 {
			// Nothing left to do but wait for the exit.
			select {
			case <-l.req.Exited:
				return
			}
		}
	}
}

func (s *Stopper) signal(p Process, sig syscall.Signal) error {
	timeout := s.SignalTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Signal(ctx, sig)
}
