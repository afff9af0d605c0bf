// Package faultpoint lets the reliability tests crash or stall crishim at
// chosen points of its work, to prove that whatever a crash leaves half
// made is cleaned up on the next start.
//
// Points are armed only through the environment, for example
//
//	CRISHIM_FAULTPOINTS=sandbox.afterNetwork=exit,container.afterCreate=sleep:3s
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
	// times, for error, is how many hits fail before the point lets the
	// rest pass (a transient fault); 0 fails every hit.
	times int
}

var (
	once  sync.Once
	armed map[string]action

	hitsMu sync.Mutex
	hits   map[string]int
)

// Parse reads a point list: comma-separated name=action where action is
// exit (os.Exit without cleanup), kill (SIGKILL to itself), sleep:<duration>,
// error, or error:<n> (only the first n hits fail).
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
		case strings.HasPrefix(act, "sleep:"):
			d, err := time.ParseDuration(strings.TrimPrefix(act, "sleep:"))
			if err != nil || d < 0 {
				return nil, fmt.Errorf("fault point %q: bad sleep duration", item)
			}
			out[name] = action{kind: "sleep", sleep: d}
		case strings.HasPrefix(act, "error:"):
			n, err := strconv.Atoi(strings.TrimPrefix(act, "error:"))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("fault point %q: bad error count", item)
			}
			out[name] = action{kind: "error", times: n}
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
// kill), return after a pause (sleep), or return ErrInjected (error; with
// a count, only until that many hits have failed).
func Hit(name string) error {
	once.Do(load)
	a, ok := armed[name]
	if !ok {
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
		if a.times > 0 && !countHit(name, a.times) {
			return nil
		}
		return fmt.Errorf("%s: %w", name, ErrInjected)
	}
	return nil
}

// countHit records a hit of a counted point and reports whether it is
// still one of the first n.
func countHit(name string, n int) bool {
	hitsMu.Lock()
	defer hitsMu.Unlock()
	if hits == nil {
		hits = map[string]int{}
	}
	hits[name]++
	return hits[name] <= n
}
