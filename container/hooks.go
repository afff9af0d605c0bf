package container

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/lifecycle"
)

// ReasonPostStartHookError is the exit reason of a container killed because
// its postStart hook failed, the reason the kubelet reports for it.
const ReasonPostStartHookError = "PostStartHookError"

// hooksOf reads the hooks a container declared. CreateContainer refused
// malformed annotations, so an error here comes from a record written by
// another version: the container then runs without hooks.
func (m *Manager) hooksOf(e *entry) lifecycle.Hooks {
	hk, err := lifecycle.ParseHooks(e.cfg.GetAnnotations())
	if err != nil {
		m.log().WithError(err).WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id}).Warn("ignoring the container's hooks")
		return lifecycle.Hooks{}
	}
	return hk
}

// terminationGrace is the grace of a stop that comes with no timeout of
// its own (StopPodSandbox, RemoveContainer, a failed postStart). The
// kubelet has stopped its containers with their own grace before it calls
// StopPodSandbox, so a container with no crishim annotations that still
// runs then is killed at once, as other runtimes do; a client that
// declared hooks or a grace gets its grace (30 s when hooks but no grace).
func (m *Manager) terminationGrace(e *entry) time.Duration {
	return m.hooksOf(e).Grace
}

// hookEnv lets hooks act on the container: exec through ExecSync, network
// hooks against the pod IP (the loopback address for host-network pods,
// whose IP crishim does not know).
func (m *Manager) hookEnv(e *entry) lifecycle.HookEnv {
	env := lifecycle.HookEnv{
		Exec: func(ctx context.Context, cmd []string) ([]byte, []byte, int32, error) {
			resp, err := m.ExecSync(ctx, e.id, cmd, 0)
			if err != nil {
				return nil, nil, 0, err
			}
			return resp.GetStdout(), resp.GetStderr(), resp.GetExitCode(), nil
		},
		Host: "127.0.0.1",
	}
	if sb, err := m.sandboxes.Get(e.rec.SandboxId); err == nil && sb.IP != "" {
		env.Host = sb.IP
	}
	return env
}

// runHook runs one hook and logs what came of it.
func (m *Manager) runHook(ctx context.Context, e *entry, phase string, h *lifecycle.Handler) error {
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id, "hook": phase, "handler": h.String()})
	log.Debug("running hook")
	start := time.Now()
	out, err := h.Run(ctx, m.hookEnv(e))
	log = log.WithField("took", time.Since(start).Round(time.Millisecond).String())
	if out != "" {
		log = log.WithField("output", out)
	}
	if err != nil {
		if ctx.Err() != nil {
			log.WithError(err).Warn("hook abandoned")
		} else {
			log.WithError(err).Warn("hook failed")
		}
		if out != "" {
			return fmt.Errorf("%s hook %s: %w (output: %s)", phase, h, err, out)
		}
		return fmt.Errorf("%s hook %s: %w", phase, h, err)
	}
	log.Info("hook done")
	return nil
}

// preStop is the container's preStop hook in the form the stop loop runs
// it, nil when it has none.
func (m *Manager) preStop(e *entry) func(context.Context) error {
	h := m.hooksOf(e).PreStop
	if h == nil {
		return nil
	}
	return func(ctx context.Context) error { return m.runHook(m.nsCtx(ctx), e, "preStop", h) }
}

// postStart runs the container's postStart hook, if any, once its process
// runs. The hook is bounded by the container's life, not by the request:
// the outcome must be acted on even when the client stops waiting. A
// failed hook kills the container the way the kubelet does (preStop and
// the grace period included) and is recorded as its exit reason.
func (m *Manager) postStart(e *entry) error {
	hk := m.hooksOf(e)
	if hk.PostStart == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(m.nsCtx(context.Background()))
	defer cancel()
	go func() {
		select {
		case <-e.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := m.runHook(ctx, e, "postStart", hk.PostStart)
	if err == nil {
		return nil
	}
	select {
	case <-e.exited:
		// The container went on its own (or was stopped): its exit says why.
		return fmt.Errorf("container %s exited during its postStart hook: %w", e.id, errors.Join(err, errdefs.ErrFailedPrecondition))
	default:
	}
	if m.stopper.Stopping(e.id) {
		return fmt.Errorf("container %s is being stopped during its postStart hook: %w", e.id, errors.Join(err, errdefs.ErrFailedPrecondition))
	}
	msg := err.Error()
	m.markPostStartFailed(e, msg)
	m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id}).Warn("killing the container: its postStart hook failed")
	sctx, scancel := context.WithTimeout(context.Background(), hk.Grace+lifecycle.MinGraceAfterPreStop+time.Minute)
	defer scancel()
	if serr := m.stop(sctx, e, hk.Grace, false); serr != nil {
		return fmt.Errorf("container %s: %s; and stopping it: %v", e.id, msg, serr)
	}
	return fmt.Errorf("container %s: %s", e.id, msg)
}

// exitReason lets a failed postStart hook name the exit it caused; an OOM
// kill stays what it is.
func exitReason(e *entry, reason, message string) (string, string) {
	if e.postStartErr != "" && reason != ReasonOOMKilled && reason != ReasonUnknown {
		return ReasonPostStartHookError, e.postStartErr
	}
	return reason, message
}

// validateHooks refuses a CreateContainer whose hook annotations are
// malformed (InvalidArgument), so a bad hook never surfaces only at stop.
func validateHooks(cfg *runtime.ContainerConfig) error {
	_, err := lifecycle.ParseHooks(cfg.GetAnnotations())
	return err
}
