// Package faultpoint lets the reliability tests crash or stall crishim at
// chosen points of its work, to prove that whatever a crash leaves half
// made is cleaned up on the next start.
//
// Points are armed only through the environment, for example
//
//	CRISHIM_FAULTPOINTS=sandbox.afterNetwork=exit,container.afterCreate=sleep:3s
//
// error:N fails only the first N hits, for a fault that heals by itself
// (a containerd that answers again).
//
// Without the variable Hit is a map lookup on a nil map: cheap enough to
// stay compiled into the production binary, which is the binary the tests
// must exercise.
package faultpoint

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// EnvVar names the environment variable holding the armed points.
const EnvVar = "CRISHIM_FAULTPOINTS"

// ExitCode is what crishim exits with at an "exit" point, so that a test
// can tell a deliberate crash from a real one.
const ExitCode = 86

// ErrInjected is returned by points armed with "error".
var ErrInjected = errors.New("fault injected")

// action is what an armed point does.
type action struct {
	kind  string // exit, kill, sleep, error
	sleep time.Duration
	// left counts the failures an error:N point still injects; nil
	// fails every hit.
	left *atomic.Int64
}

var (
	once  sync.Once
	armed map[string]action
)

// Parse reads a point list: comma-separated name=action where action is
// exit (os.Exit without cleanup), kill (SIGKILL to itself), sleep:<duration>,
// error, or error:N (only the first N hits fail).
func Parse(spec string) (map[string]action, error) {
	out := map[string]action{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, act, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("fault point %q: want name=action", item)
		}
		switch {
		case act == "exit" || act == "kill" || act == "error":
			out[name] = action{kind: act}
		case strings.HasPrefix(act, "error:"):
			n, err := strconv.ParseInt(strings.TrimPrefix(act, "error:"), 10, 64)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("fault point %q: bad error count", item)
			}
			left := &atomic.Int64{}
			left.Store(n)
			out[name] = action{kind: "error", left: left}
		case strings.HasPrefix(act, "sleep:"):
			d, err := time.ParseDuration(strings.TrimPrefix(act, "sleep:"))
			if err != nil || d < 0 {
				return nil, fmt.Errorf("fault point %q: bad sleep duration", item)
			}
			out[name] = action{kind: "sleep", sleep: d}
		default:
			return nil, fmt.Errorf("fault point %q: unknown action %q", item, act)
		}
	}
	return out, nil
}

func load() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	a, err := Parse(spec)
	if err != nil {
		// A mistyped test setting must not pass silently as "no fault".
		logrus.WithError(err).Fatal("invalid " + EnvVar)
	}
	armed = a
	logrus.WithField("points", spec).Warn("fault points armed: this crishim will crash or stall on purpose")
}

// Hit runs the point's action if it is armed: it may not return (exit,
// kill), return after a pause (sleep), or return ErrInjected (error).
func Hit(name string) error {
	once.Do(load)
	a, ok := armed[name]
	if !ok {
		return nil
	}
	if a.left != nil && a.left.Add(-1) < 0 {
		return nil
	}
	logrus.WithField("point", name).Warnf("fault point reached: %s", a.kind)
	switch a.kind {
	case "exit":
		os.Exit(ExitCode)
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	case "sleep":
		time.Sleep(a.sleep)
	case "error":
		return fmt.Errorf("%s: %w", name, ErrInjected)
	}
	return nil
}
