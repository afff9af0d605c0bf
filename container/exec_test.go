package container

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/containerd/containerd/errdefs"
)

// ExecSync and the streaming Exec share one path: the same refusals, and
// on a real container the streams, stdin's end, exit codes, a terminal of
// the client's size that follows its resizes, and the kill and removal of
// a process whose client went away.
func TestContainerdExecBothEntryPoints(t *testing.T) {
	e := setup(t)
	id := e.create(t, "execs", nil, "sh", "-c", "while true; do sleep 1; done")
	if err := e.m.Start(e.ctx, id); err != nil {
		t.Fatal(err)
	}

	var out, errOut syncBuffer
	err := e.m.Exec(e.ctx, id, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Streams{Stdout: &out, Stderr: &errOut})
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 3 || out.String() != "out\n" || errOut.String() != "err\n" {
		t.Errorf("streaming exec: %v, stdout %q, stderr %q; want exit code 3, out, err", err, out.String(), errOut.String())
	}
	res, err := e.m.ExecSync(e.ctx, id, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, 0)
	if err != nil || res.ExitCode != 3 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Errorf("ExecSync: %+v, %v; want exit code 3, out, err", res, err)
	}

	// The end of the client's input is the process's EOF.
	input := "line one\nline two\n"
	var echoed syncBuffer
	if err := e.m.Exec(e.ctx, id, []string{"cat"}, Streams{Stdin: strings.NewReader(input), Stdout: &echoed}); err != nil || echoed.String() != input {
		t.Errorf("streaming exec of cat: %v, stdout %q; want %q back", err, echoed.String(), input)
	}

	// A terminal starts at the client's size and follows its resizes until
	// the client goes away, which kills the process.
	sizes := make(chan TerminalSize, 1)
	sizes <- TerminalSize{Width: 80, Height: 24}
	var term syncBuffer
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	ended := make(chan error, 1)
	go func() {
		ended <- e.m.Exec(ctx, id, []string{"sh", "-c", "while true; do stty size; sleep 0.1; done", "resize-loop"},
			Streams{Stdout: &term, TTY: true, Resize: sizes})
	}()
	waitUntil(t, func() bool { return strings.Contains(term.String(), "24 80\r\n") })
	sizes <- TerminalSize{Width: 100, Height: 30}
	waitUntil(t, func() bool { return strings.Contains(term.String(), "30 100\r\n") })
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("streaming exec whose client went away: %v, want context.Canceled", err)
	}
	waitUntil(t, func() bool {
		res, err := e.m.ExecSync(e.ctx, id, []string{"ps", "-o", "args"}, 5)
		return err == nil && !strings.Contains(string(res.Stdout), "resize-loop")
	})
	waitUntil(t, func() bool {
		dirs, err := os.ReadDir(e.m.execFIFODir(id))
		return err == nil && len(dirs) == 0
	})

	for name, run := range map[string]func(id string, cmd ...string) error{
		"ExecSync": func(id string, cmd ...string) error { _, err := e.m.ExecSync(e.ctx, id, cmd, 0); return err },
		"Exec":     func(id string, cmd ...string) error { return e.m.Exec(e.ctx, id, cmd, Streams{Stdout: &out}) },
	} {
		if err := run(id); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s without a command: %v, want InvalidArgument", name, err)
		}
		if err := run(strings.Repeat("0", 64), "true"); !errdefs.IsNotFound(err) {
			t.Errorf("%s in an unknown container: %v, want NotFound", name, err)
		}
	}
	// Timeouts too long for a time.Duration are no timeout: in nanoseconds,
	// 2^64/1e9 seconds (rounded up) wraps around to 0.29 s.
	for _, timeout := range []int64{math.MaxUint64/1_000_000_000 + 1, math.MaxInt64} {
		res, err = e.m.ExecSync(e.ctx, id, []string{"sh", "-c", "sleep 1; echo in time"}, timeout)
		if err != nil || res.ExitCode != 0 || string(res.Stdout) != "in time\n" {
			t.Errorf("ExecSync with a timeout of %d s: %+v, %v; want exit code 0 and its output", timeout, res, err)
		}
	}

	if err := e.m.Stop(e.ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.ExecSync(e.ctx, id, []string{"true"}, 0); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("ExecSync in a stopped container: %v, want FailedPrecondition", err)
	}
	if err := e.m.Exec(e.ctx, id, []string{"true"}, Streams{Stdout: &out}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("streaming exec in a stopped container: %v, want FailedPrecondition", err)
	}
}
