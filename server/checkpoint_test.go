package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A first checkpoint RPC whose context is already cancelled gets
// Canceled, and the criu probe it started still answers the next RPC
// with what criu said, not with the first caller's cancellation.
func TestCRIUProbeOutlivesCancelledCaller(t *testing.T) {
	dir := t.TempDir()
	// A criu whose check passes: crishim then says checkpointing is not
	// implemented.
	if err := os.WriteFile(filepath.Join(dir, "criu"), []byte("#!/bin/sh\necho 'Looks good.'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":/usr/bin:/bin")
	old := criuProbe
	criuProbe = newCRIUProber()
	t.Cleanup(func() { criuProbe = old })

	s := &Server{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: "x"})
	if c := status.Code(err); c != codes.Canceled && c != codes.Unimplemented {
		t.Errorf("CheckpointContainer with a cancelled context: %v, want Canceled (or the probe's answer)", err)
	}
	_, err = s.CheckpointPod(context.Background(), &runtime.CheckpointPodRequest{PodSandboxId: "x"})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "not implemented in this crishim release") {
		t.Errorf("CheckpointPod after a cancelled first call: %v, want Unimplemented saying checkpointing is not implemented", err)
	}
}
