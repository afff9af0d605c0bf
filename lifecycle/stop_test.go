package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
)

// fakeProcess records signals and exits on the ones it does not ignore.
type fakeProcess struct {
	mu      sync.Mutex
	signals []syscall.Signal
	ignore  map[syscall.Signal]bool
	exited  chan struct{}
	once    sync.Once
}

func newFakeProcess(ignore ...syscall.Signal) *fakeProcess {
	p := &fakeProcess{ignore: map[syscall.Signal]bool{}, exited: make(chan struct{})}
	for _, s := range ignore {
		p.ignore[s] = true
	}
	return p
}

func (p *fakeProcess) Signal(_ context.Context, sig syscall.Signal) error {
	p.mu.Lock()
	p.signals = append(p.signals, sig)
	p.mu.Unlock()
	if !p.ignore[sig] {
		p.once.Do(func() { close(p.exited) })
	}
	return nil
}

func (p *fakeProcess) got() []syscall.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]syscall.Signal(nil), p.signals...)
}

func count(sigs []syscall.Signal, s syscall.Signal) int {
	n := 0
	for _, x := range sigs {
		if x == s {
			n++
		}
	}
	return n
}

func testStopper() *Stopper {
	return &Stopper{KillRetry: time.Hour, SignalTimeout: time.Second}
}

func TestStopGracefulExit(t *testing.T) {
	s := testStopper()
	p := newFakeProcess()
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGQUIT, Grace: time.Minute}
	if err := s.Stop(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := p.got(); len(got) != 1 || got[0] != syscall.SIGQUIT {
		t.Fatalf("signals = %v, want [SIGQUIT]", got)
	}
}

func TestStopZeroTimeoutKillsAtOnce(t *testing.T) {
	s := testStopper()
	p := newFakeProcess()
	start := time.Now()
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: 0}
	if err := s.Stop(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := p.got(); len(got) != 1 || got[0] != syscall.SIGKILL {
		t.Fatalf("signals = %v, want [SIGKILL]", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("kill took %v", d)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	s := testStopper()
	p := newFakeProcess(syscall.SIGTERM)
	grace := 300 * time.Millisecond
	start := time.Now()
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: grace}
	if err := s.Stop(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < grace {
		t.Fatalf("killed after %v, before the %v grace period", d, grace)
	}
	got := p.got()
	if count(got, syscall.SIGTERM) != 1 || count(got, syscall.SIGKILL) != 1 || got[0] != syscall.SIGTERM {
		t.Fatalf("signals = %v, want [SIGTERM SIGKILL]", got)
	}
}

func TestSecondStopShortensDeadlineAndSignalsOnce(t *testing.T) {
	s := testStopper()
	p := newFakeProcess(syscall.SIGTERM)
	first := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: time.Hour}
	errc := make(chan error, 1)
	go func() { errc <- s.Stop(context.Background(), first) }()
	waitFor(t, func() bool { return count(p.got(), syscall.SIGTERM) == 1 })

	start := time.Now()
	second := first
	second.Grace = 200 * time.Millisecond
	if err := s.Stop(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second stop took %v; deadline not shortened", d)
	}
	if err := <-errc; err != nil {
		t.Fatalf("first stop: %v", err)
	}
	got := p.got()
	if count(got, syscall.SIGTERM) != 1 || count(got, syscall.SIGKILL) != 1 {
		t.Fatalf("signals = %v, want one SIGTERM and one SIGKILL", got)
	}
}

func TestLongerSecondStopDoesNotExtendDeadline(t *testing.T) {
	s := testStopper()
	p := newFakeProcess(syscall.SIGTERM)
	first := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: 300 * time.Millisecond}
	go s.Stop(context.Background(), first) //nolint:errcheck // the second call observes the outcome
	waitFor(t, func() bool { return s.Stopping("c") })
	second := first
	second.Grace = time.Hour
	start := time.Now()
	if err := s.Stop(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stop took %v; the longer grace replaced the shorter one", d)
	}
}

func TestCancelledStopKeepsLoopGraceful(t *testing.T) {
	s := testStopper()
	p := newFakeProcess(syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	req := StopRequest{ID: "c", Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: 400 * time.Millisecond}
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- s.Stop(ctx, req) }()
	waitFor(t, func() bool { return count(p.got(), syscall.SIGTERM) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled stop returned %v", err)
	}
	if n := count(p.got(), syscall.SIGKILL); n != 0 {
		t.Fatalf("cancelling the request killed the container early")
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("loop abandoned after cancel: container never killed")
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("killed after %v, before the grace period", d)
	}
	waitFor(t, func() bool { return !s.Stopping("c") })
}

func TestStopAlreadyExited(t *testing.T) {
	s := testStopper()
	p := newFakeProcess()
	close(p.exited)
	if err := s.Stop(context.Background(), StopRequest{ID: "c", Process: p, Exited: p.exited, Grace: time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := p.got(); len(got) != 0 {
		t.Fatalf("signalled an exited container: %v", got)
	}
}

func TestKillRetriedUntilExit(t *testing.T) {
	s := &Stopper{KillRetry: 50 * time.Millisecond, SignalTimeout: time.Second}
	p := &flakyKill{fakeProcess: newFakeProcess(syscall.SIGKILL), exitAfter: 3}
	if err := s.Stop(context.Background(), StopRequest{ID: "c", Process: p, Exited: p.exited, Grace: 0}); err != nil {
		t.Fatal(err)
	}
	if n := count(p.got(), syscall.SIGKILL); n != 3 {
		t.Fatalf("SIGKILL sent %d times, want 3", n)
	}
}

// flakyKill exits only on the exitAfter-th SIGKILL.
type flakyKill struct {
	*fakeProcess
	exitAfter int
}

func (p *flakyKill) Signal(ctx context.Context, sig syscall.Signal) error {
	p.fakeProcess.Signal(ctx, sig) //nolint:errcheck // never fails
	if count(p.got(), syscall.SIGKILL) == p.exitAfter {
		p.once.Do(func() { close(p.exited) })
	}
	return nil
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goneProcess has no process behind it: every signal says NotFound, as
// containerd does for a task it no longer has.
type goneProcess struct {
	mu      sync.Mutex
	signals []syscall.Signal
}

func (p *goneProcess) Signal(_ context.Context, sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signals = append(p.signals, sig)
	return fmt.Errorf("task c: %w", errdefs.ErrNotFound)
}

// TestStopGoneTaskNotKilledForever stops a container whose task is gone
// with nobody recording its exit: the loop must hand the loss to the owner
// (Gone) once and stop signalling, not send SIGKILL every KillRetry while
// it waits for an exit that only the owner can record.
func TestStopGoneTaskNotKilledForever(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		want []syscall.Signal
	}{
		{"graceful", syscall.SIGTERM, []syscall.Signal{syscall.SIGTERM}},
		{"kill", syscall.SIGKILL, []syscall.Signal{syscall.SIGKILL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Stopper{KillRetry: time.Millisecond, SignalTimeout: time.Second}
			p := &goneProcess{}
			exited := make(chan struct{})
			gone := 0
			var mu sync.Mutex
			req := StopRequest{ID: "c", Process: p, Exited: exited, Signal: tc.sig, Grace: 0,
				Gone: func() {
					mu.Lock()
					gone++
					mu.Unlock()
					close(exited) // the owner records the loss
				}}
			if tc.sig != syscall.SIGKILL {
				req.Grace = time.Minute
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Stop(ctx, req); err != nil {
				t.Fatalf("Stop of a container whose task is gone: %v", err)
			}
			// The loop unregisters itself after Exited; wait for that.
			for s.Stopping("c") {
				if ctx.Err() != nil {
					t.Fatal("the stop loop still runs after the exit was recorded")
				}
				time.Sleep(time.Millisecond)
			}
			p.mu.Lock()
			got := append([]syscall.Signal(nil), p.signals...)
			p.mu.Unlock()
			if len(got) != len(tc.want) || got[0] != tc.want[0] {
				t.Errorf("signals = %v, want %v (no retries to a task that is not there)", got, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if gone != 1 {
				t.Errorf("Gone called %d times, want 1", gone)
			}
		})
	}
}
