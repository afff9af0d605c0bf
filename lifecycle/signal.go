package lifecycle

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopSignal picks the signal a graceful stop sends, in the order Kubernetes
// defines: the CRI stop_signal, then the image's STOPSIGNAL, then SIGTERM.
// An image signal that cannot be parsed is an error rather than a silent
// SIGTERM: the container author asked for something specific.
func StopSignal(cri runtime.Signal, image string) (syscall.Signal, error) {
	if cri != runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
		return SignalFromCRI(cri)
	}
	if image != "" {
		return ParseSignal(image)
	}
	return syscall.SIGTERM, nil
}

// SignalFromCRI converts the CRI signal enum (SIGNAL_SIGTERM,
// SIGNAL_SIGRTMINPLUS3 ...) to the host signal.
func SignalFromCRI(s runtime.Signal) (syscall.Signal, error) {
	name, ok := runtime.Signal_name[int32(s)]
	if !ok || s == runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
		return 0, fmt.Errorf("stop signal %d: %w", s, errdefs.ErrInvalidArgument)
	}
	name = strings.TrimPrefix(name, "SIGNAL_")
	name = strings.Replace(name, "MINPLUS", "MIN+", 1)
	name = strings.Replace(name, "MAXMINUS", "MAX-", 1)
	return ParseSignal(name)
}

// ParseSignal accepts the forms image configs use: "SIGTERM", "TERM",
// "15", "SIGRTMIN+3", "RTMAX-1".
func ParseSignal(name string) (syscall.Signal, error) {
	s := strings.ToUpper(strings.TrimSpace(name))
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > rtMax {
			return 0, fmt.Errorf("signal %q out of range: %w", name, errdefs.ErrInvalidArgument)
		}
		return syscall.Signal(n), nil
	}
	if !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	if rt, ok := parseRealtime(s); ok {
		if rt < rtMin || rt > rtMax {
			return 0, fmt.Errorf("signal %q out of range: %w", name, errdefs.ErrInvalidArgument)
		}
		return syscall.Signal(rt), nil
	}
	switch s {
	// Aliases unix.SignalNum does not know.
	case "SIGCLD":
		return syscall.SIGCHLD, nil
	case "SIGPOLL":
		return syscall.SIGIO, nil
	case "SIGIOT":
		return syscall.SIGABRT, nil
	}
	if sig := unix.SignalNum(s); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q: %w", name, errdefs.ErrInvalidArgument)
}

// The realtime range as glibc exposes it to programs (the C library keeps
// 32 and 33 for itself), which is what image authors mean by SIGRTMIN.
const (
	rtMin = 34
	rtMax = 64
)

func parseRealtime(s string) (int, bool) {
	for _, base := range []struct {
		prefix string
		value  int
	}{{"SIGRTMIN", rtMin}, {"SIGRTMAX", rtMax}} {
		if !strings.HasPrefix(s, base.prefix) {
			continue
		}
		rest := s[len(base.prefix):]
		if rest == "" {
			return base.value, true
		}
		n, err := strconv.Atoi(rest)
		if err != nil || (rest[0] != '+' && rest[0] != '-') {
			return 0, false
		}
		return base.value + n, true
	}
	return 0, false
}
