package lifecycle

import "sync/atomic"

// stopObserver is process-wide rather than per Stopper so that the
// metrics can be wired without threading a callback through every owner
// of a Stopper.
var stopObserver atomic.Pointer[func(id string, killed bool)]

// ObserveStops sets fn to be told how each container's stop loop ended: killed when
// SIGKILL was sent, else the container exited on its own or on the stop
// signal within the grace period. nil turns it off.
func ObserveStops(fn func(id string, killed bool)) {
	if fn == nil {
		stopObserver.Store(nil)
		return
	}
	stopObserver.Store(&fn)
}

func observeStop(id string, killed bool) {
	if fn := stopObserver.Load(); fn != nil {
		(*fn)(id, killed)
	}
}
