package server

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criuProbe remembers why checkpointing is unavailable: `criu check` is slow
// and the answer only changes with a new kernel or criu package.
var criuProbe struct {
	once sync.Once
	why  string
}

// checkpointUnavailable explains why crishim does not checkpoint. crishim
// only checkpoints through CRIU, and the CRIU shipped with Debian bookworm
// (3.17) cannot even initialise on the kernels these nodes run ("vdso:
// Unexpected rt vDSO area bounds"), so the RPCs stay Unimplemented with that
// reason rather than failing halfway through a dump.
func checkpointUnavailable(ctx context.Context) error {
	criuProbe.once.Do(func() {
		path, err := exec.LookPath("criu")
		if err != nil {
			criuProbe.why = "criu is not installed"
			return
		}
		out, err := exec.CommandContext(ctx, path, "check").CombinedOutput()
		if err == nil {
			criuProbe.why = "checkpoint/restore through criu is not implemented in this crishim release"
			return
		}
		criuProbe.why = "`criu check` fails on this host: " + firstLine(string(out), err)
	})
	return status.Error(codes.Unimplemented, "checkpoint/restore unavailable: "+criuProbe.why)
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
