package lifecycle

import (
	"syscall"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"SIGTERM": syscall.SIGTERM, "term": syscall.SIGTERM, "9": syscall.SIGKILL,
		"SIGQUIT": syscall.SIGQUIT, "SIGRTMIN": 34, "SIGRTMIN+3": 37, "RTMAX-1": 63,
		"SIGPOLL": syscall.SIGIO, "SIGWINCH": syscall.SIGWINCH,
	} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SIGFOO", "0", "65", "SIGRTMIN+40", "SIGRTMINx"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) accepted", bad)
		}
	}
}

func TestStopSignalPrecedence(t *testing.T) {
	cases := []struct {
		cri   runtime.Signal
		image string
		want  syscall.Signal
	}{
		{runtime.Signal_SIGNAL_RUNTIME_DEFAULT, "", syscall.SIGTERM},
		{runtime.Signal_SIGNAL_RUNTIME_DEFAULT, "SIGQUIT", syscall.SIGQUIT},
		{runtime.Signal_SIGNAL_SIGUSR1, "SIGQUIT", syscall.SIGUSR1},
		{runtime.Signal_SIGNAL_SIGRTMINPLUS2, "", 36},
		{runtime.Signal_SIGNAL_SIGRTMAXMINUS1, "", 63},
		{runtime.Signal_SIGNAL_SIGCLD, "", syscall.SIGCHLD},
	}
	for _, c := range cases {
		got, err := StopSignal(c.cri, c.image)
		if err != nil || got != c.want {
			t.Errorf("StopSignal(%v, %q) = %v, %v; want %v", c.cri, c.image, got, err, c.want)
		}
	}
	// Every CRI signal must map to something.
	for v := range runtime.Signal_name {
		if v == 0 {
			continue
		}
		if _, err := SignalFromCRI(runtime.Signal(v)); err != nil {
			t.Errorf("SignalFromCRI(%v): %v", runtime.Signal(v), err)
		}
	}
}
