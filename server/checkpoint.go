package server

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criuProbeTimeout bounds `criu check`; a probe that hangs longer says so.
const criuProbeTimeout = time.Minute

// criuProber remembers why checkpointing is unavailable: `criu check` is
// slow and the answer only changes with a new kernel or criu package. The
// probe runs once, on a context of its own: the RPC that happens to start
// it may be cancelled, and its cancellation is no answer about criu.
type criuProber struct {
	once sync.Once
	done chan struct{}
	why  string
}

func newCRIUProber() *criuProber { return &criuProber{done: make(chan struct{})} }

var criuProbe = newCRIUProber()

// reason waits for the probe's answer, or for ctx.
func (p *criuProber) reason(ctx context.Context) (string, error) {
	p.once.Do(func() {
		go func() {
			defer close(p.done)
			pctx, cancel := context.WithTimeout(context.Background(), criuProbeTimeout)
			defer cancel()
			p.why = probeCRIU(pctx)
		}()
	})
	select {
	case <-p.done:
		return p.why, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func probeCRIU(ctx context.Context) string {
	path, err := exec.LookPath("criu")
	if err != nil {
		return "criu is not installed"
	}
	out, err := exec.CommandContext(ctx, path, "check").CombinedOutput()
	switch {
	case err == nil:
		return "checkpoint/restore through criu is not implemented in this crishim release"
	case ctx.Err() != nil:
		return fmt.Sprintf("`criu check` did not finish within %s", criuProbeTimeout)
	}
	return "`criu check` fails on this host: " + firstLine(string(out), err)
}

// checkpointUnavailable explains why crishim does not checkpoint. crishim
// only checkpoints through CRIU, and the CRIU shipped with Debian bookworm
// (3.17) cannot even initialise on the kernels these nodes run ("vdso:
// Unexpected rt vDSO area bounds"), so the RPCs stay Unimplemented with that
// reason rather than failing halfway through a dump.
func checkpointUnavailable(ctx context.Context) error {
	why, err := criuProbe.reason(ctx)
	if err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unimplemented, "checkpoint/restore unavailable: "+why)
}

func firstLine(out string, err error) string {
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return fmt.Sprint(err)
}

// CheckpointContainer is unavailable; see checkpointUnavailable.
func (s *Server) CheckpointContainer(ctx context.Context, req *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	return nil, checkpointUnavailable(ctx)
}

// CheckpointPod is unavailable; see checkpointUnavailable.
func (s *Server) CheckpointPod(ctx context.Context, req *runtime.CheckpointPodRequest) (*runtime.CheckpointPodResponse, error) {
	return nil, checkpointUnavailable(ctx)
}

// RestorePod is unavailable; see checkpointUnavailable.
func (s *Server) RestorePod(ctx context.Context, req *runtime.RestorePodRequest) (*runtime.RestorePodResponse, error) {
	return nil, checkpointUnavailable(ctx)
}
