package lifecycle

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestSignalDeadline(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, c := range []struct {
		deadline time.Time
		want     time.Time
	}{
		// Grace left over after the hook: kept.
		{now.Add(10 * time.Second), now.Add(10 * time.Second)},
		// The hook used nearly all of it: the 2 s floor.
		{now.Add(500 * time.Millisecond), now.Add(MinGraceAfterPreStop)},
		// The hook ran past the deadline (abandoned): the floor as well.
		{now.Add(-3 * time.Second), now.Add(MinGraceAfterPreStop)},
		{now.Add(MinGraceAfterPreStop), now.Add(MinGraceAfterPreStop)},
	} {
		if got := SignalDeadline(c.deadline, now, MinGraceAfterPreStop); !got.Equal(c.want) {
			t.Errorf("SignalDeadline(now%+v) = now%+v, want now%+v", c.deadline.Sub(now), got.Sub(now), c.want.Sub(now))
		}
	}
}

// hookRecorder is a preStop hook that notes when it ran and whether it
// was cancelled, around the process's signals.
type hookRecorder struct {
	p       *fakeProcess
	run     func(ctx context.Context) error
	mu      sync.Mutex
	started time.Time
	ended   time.Time
	signals int // signals the process had seen when the hook started
	cancel  bool
}

func (h *hookRecorder) hook(ctx context.Context) error {
	h.mu.Lock()
	h.started = time.Now()
	h.signals = len(h.p.got())
	h.mu.Unlock()
	err := h.run(ctx)
	h.mu.Lock()
	h.ended = time.Now()
	h.cancel = ctx.Err() != nil
	h.mu.Unlock()
	return err
}

func (h *hookRecorder) snapshot() (started, ended time.Time, signals int, cancelled bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started, h.ended, h.signals, h.cancel
}

func stopperWithMin(min time.Duration) *Stopper {
	return &Stopper{KillRetry: time.Hour, SignalTimeout: time.Second, MinGrace: min}
}

func TestPreStopRunsBeforeSignal(t *testing.T) {
	s := stopperWithMin(time.Hour)
	p := newFakeProcess()
	h := &hookRecorder{p: p, run: func(context.Context) error { return nil }}
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: time.Minute, PreStop: h.hook}
	if err := s.Stop(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	started, _, before, cancelled := h.snapshot()
	if started.IsZero() || before != 0 || cancelled {
		t.Fatalf("hook started=%v after %d signals, cancelled=%v; want run before any signal", started, before, cancelled)
	}
	if got := p.got(); len(got) != 1 || got[0] != syscall.SIGTERM {
		t.Fatalf("signals = %v, want [SIGTERM]", got)
	}
}

// A hook that outlives the grace period is abandoned at the deadline, and
// the stop signal still gets the minimum grace before SIGKILL.
func TestPreStopAbandonedAtDeadlineThenMinimumGrace(t *testing.T) {
	const grace, min = 300 * time.Millisecond, 400 * time.Millisecond
	s := stopperWithMin(min)
	p := newFakeProcess(syscall.SIGTERM)
	h := &hookRecorder{p: p, run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	start := time.Now()
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: grace, PreStop: h.hook}
	if err := s.Stop(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	waitFor(t, func() bool { _, ended, _, _ := h.snapshot(); return !ended.IsZero() })
	_, ended, _, cancelled := h.snapshot()
	if !cancelled || ended.Sub(start) < grace {
		t.Errorf("hook cancelled=%v after %v; want cancelled at the %v deadline", cancelled, ended.Sub(start), grace)
	}
	if got := p.got(); len(got) != 2 || got[0] != syscall.SIGTERM || got[1] != syscall.SIGKILL {
		t.Fatalf("signals = %v, want [SIGTERM SIGKILL]", got)
	}
	if took < grace+min {
		t.Errorf("killed after %v; the stop signal did not get the %v minimum after the %v grace", took, min, grace)
	}
}

// A hook's time comes out of the grace period: what is left, if more than
// the minimum, is the stop signal's grace.
func TestPreStopConsumesGrace(t *testing.T) {
	const grace, hookTime = 1500 * time.Millisecond, 600 * time.Millisecond
	s := stopperWithMin(50 * time.Millisecond)
	p := newFakeProcess(syscall.SIGTERM)
	h := &hookRecorder{p: p, run: func(ctx context.Context) error {
		select {
		case <-time.After(hookTime):
		case <-ctx.Done():
		}
		return nil
	}}
	start := time.Now()
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: grace, PreStop: h.hook}
	if err := s.Stop(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if _, _, _, cancelled := h.snapshot(); cancelled {
		t.Error("a hook shorter than the grace period was cancelled")
	}
	// SIGKILL at the original deadline: not hook time + full grace.
	if took < grace || took > grace+hookTime/2+time.Second {
		t.Errorf("killed after %v, want about %v (the hook's %v counted in)", took, grace, hookTime)
	}
}

func TestKillDuringPreStopAbandonsHook(t *testing.T) {
	s := stopperWithMin(time.Hour)
	p := newFakeProcess(syscall.SIGTERM)
	h := &hookRecorder{p: p, run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	first := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: time.Hour, PreStop: h.hook}
	go s.Stop(context.Background(), first) //nolint:errcheck // the kill observes the outcome
	waitFor(t, func() bool { started, _, _, _ := h.snapshot(); return !started.IsZero() })
	kill := first
	kill.Grace = 0
	start := time.Now()
	if err := s.Stop(context.Background(), kill); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("kill during preStop took %v", d)
	}
	// An explicit kill gets neither the stop signal nor the minimum grace.
	if got := p.got(); len(got) != 1 || got[0] != syscall.SIGKILL {
		t.Fatalf("signals = %v, want [SIGKILL]", got)
	}
	waitFor(t, func() bool { _, _, _, c := h.snapshot(); return c })
}

func TestNoPreStopForImmediateKill(t *testing.T) {
	s := stopperWithMin(time.Hour)
	p := newFakeProcess()
	ran := make(chan struct{}, 1)
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: 0,
		PreStop: func(context.Context) error { ran <- struct{}{}; return nil }}
	if err := s.Stop(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
		t.Fatal("preStop ran for a stop with timeout 0")
	default:
	}
}

func TestExitDuringPreStopSendsNothing(t *testing.T) {
	s := stopperWithMin(time.Hour)
	p := newFakeProcess()
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: time.Hour,
		PreStop: func(ctx context.Context) error {
			// The hook makes the container quit by itself.
			p.once.Do(func() { close(p.exited) })
			<-ctx.Done()
			return ctx.Err()
		}}
	if err := s.Stop(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !s.Stopping("c") })
	if got := p.got(); len(got) != 0 {
		t.Fatalf("signals = %v after the container exited during preStop", got)
	}
}

// A cancelled request leaves the hook running: only the grace ends it.
func TestCancelledStopDoesNotAbandonPreStop(t *testing.T) {
	s := stopperWithMin(10 * time.Millisecond)
	p := newFakeProcess()
	release := make(chan struct{})
	h := &hookRecorder{p: p, run: func(ctx context.Context) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: time.Hour, PreStop: h.hook}
	go func() { errc <- s.Stop(ctx, req) }()
	waitFor(t, func() bool { started, _, _, _ := h.snapshot(); return !started.IsZero() })
	cancel()
	<-errc
	if _, _, _, cancelled := h.snapshot(); cancelled || len(p.got()) != 0 {
		t.Fatalf("cancelling the request disturbed the hook (cancelled=%v, signals %v)", cancelled, p.got())
	}
	close(release)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("stop signal never sent after the hook")
	}
	if got := p.got(); len(got) != 1 || got[0] != syscall.SIGTERM {
		t.Fatalf("signals = %v, want [SIGTERM]", got)
	}
}
