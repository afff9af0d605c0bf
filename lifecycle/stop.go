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
	// A Grace of zero or less kills at once.
	Signal syscall.Signal
	Grace  time.Duration
	// PreStop, when set, runs before the stop signal and consumes the
	// grace period; its context ends when the grace runs out (the hook is
	// abandoned) or the container exits. It does not run for a kill.
	PreStop func(ctx context.Context) error
	// Gone, when set, is called once if a signal finds no process to
	// deliver to (errdefs.ErrNotFound): the task is gone, and only the
	// owner can tell whether an exit is still coming or must be recorded
	// as lost. The loop stops signalling then and waits for Exited.
	Gone func()
}

// MinGraceAfterPreStop is the least time the stop signal gets before
// SIGKILL once a preStop hook has used up the grace period: the kubelet's
// minimum grace period.
const MinGraceAfterPreStop = 2 * time.Second

// SignalDeadline is when SIGKILL is due after a preStop hook ends at now:
// the original deadline, but never less than min away.
func SignalDeadline(deadline, now time.Time, min time.Duration) time.Time {
	if floor := now.Add(min); deadline.Before(floor) {
		return floor
	}
	return deadline
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
	// MinGrace is what the stop signal gets at least after a preStop hook
	// (MinGraceAfterPreStop in production).
	MinGrace time.Duration

	mu    sync.Mutex
	loops map[string]*stopLoop
}

// NewStopper returns a Stopper with production timings.
func NewStopper() *Stopper {
	return &Stopper{KillRetry: 5 * time.Second, SignalTimeout: 10 * time.Second, MinGrace: MinGraceAfterPreStop, loops: map[string]*stopLoop{}}
}

type stopLoop struct {
	req StopRequest
	// deadline is when SIGKILL is due; guarded by Stopper.mu.
	deadline time.Time
	// kill is set once any request asked for an immediate kill (grace 0):
	// no hook, no stop signal, no minimum grace; guarded by Stopper.mu.
	kill bool
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
		if deadline.Before(l.deadline) || req.Grace <= 0 {
			l.deadline = deadline
			l.kill = l.kill || req.Grace <= 0
			select {
			case l.sooner <- struct{}{}:
			default:
			}
		}
		// Wait on the running loop's container, the one it will see exit.
		req.Exited = l.req.Exited
	} else {
		l = &stopLoop{req: req, deadline: deadline, kill: req.Grace <= 0, sooner: make(chan struct{}, 1)}
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

	if l.req.PreStop != nil && !s.killing(l) {
		if exited := s.runPreStop(l, log); exited {
			observeStop(l.req.ID, false)
			return
		}
		s.mu.Lock()
		if !l.kill {
			l.deadline = SignalDeadline(l.deadline, time.Now(), s.MinGrace)
		}
		s.mu.Unlock()
	}

	graceful := l.req.Signal != 0 && l.req.Signal != syscall.SIGKILL && !s.killing(l)
	if graceful {
		log.WithField("signal", l.req.Signal).Debug("sending stop signal")
		if err := s.signal(l.req.Process, l.req.Signal); errors.Is(err, errdefs.ErrNotFound) {
			s.gone(l, log, false)
			return
		} else if err != nil {
			// The grace period only means something if the signal
			// arrived; waiting it out would just delay the kill.
			log.WithError(err).Warn("stop signal failed; killing")
			s.mu.Lock()
			l.deadline = time.Now()
			s.mu.Unlock()
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
			observeStop(l.req.ID, killed)
			return
		case <-l.sooner:
			continue
		case <-timer.C:
		}
		if !killed || s.KillRetry > 0 {
			log.Debug("grace period over; sending SIGKILL")
			err := s.signal(l.req.Process, syscall.SIGKILL)
			if errors.Is(err, errdefs.ErrNotFound) {
				s.gone(l, log, killed)
				return
			}
			if err != nil {
				log.WithError(err).Warn("SIGKILL failed")
			}
		}
		killed = true
		if s.KillRetry <= 0 {
			// Nothing left to do but wait for the exit.
			select {
			case <-l.req.Exited:
				observeStop(l.req.ID, true)
				return
			}
		}
	}
}

// gone ends a loop whose signal found no process: repeating SIGKILL to a
// task that is not there would go on forever. The exit is the owner's to
// record (req.Gone); the loop only waits for it.
func (s *Stopper) gone(l *stopLoop, log *logrus.Entry, killed bool) {
	log.Debug("no process left to signal")
	if l.req.Gone != nil {
		l.req.Gone()
	}
	<-l.req.Exited
	observeStop(l.req.ID, killed)
}

func (s *Stopper) killing(l *stopLoop) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return l.kill
}

// runPreStop runs the hook until it ends, the deadline passes, a kill is
// requested or the container exits (reported as true). The hook is never
// waited for once abandoned: its context is cancelled and the stop goes on.
func (s *Stopper) runPreStop(l *stopLoop, log *logrus.Entry) (exited bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- l.req.PreStop(ctx) }()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		s.mu.Lock()
		due, kill := l.deadline, l.kill
		s.mu.Unlock()
		if kill {
			log.Info("preStop hook abandoned: container is being killed")
			return false
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(time.Until(due), 0))
		select {
		case err := <-done:
			// The hook's own outcome is logged by whoever wrote it; a
			// failed preStop does not change the stop (nor did it in the kubelet).
			log.WithField("took", time.Since(start)).WithError(err).Debug("preStop hook finished")
			return false
		case <-l.req.Exited:
			return true
		case <-l.sooner:
		case <-timer.C:
			log.WithField("took", time.Since(start)).Warn("preStop hook abandoned: grace period over")
			return false
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
