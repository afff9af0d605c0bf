package server

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/version"
)

// Version reports crishim and the CRI API version it serves.
func (s *Server) Version(ctx context.Context, req *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       version.RuntimeName,
		RuntimeVersion:    version.Version,
		RuntimeApiVersion: version.CRIAPIVersion,
	}, nil
}

// Status reports whether containerd answers (RuntimeReady) and whether pod
// networking has a working CNI configuration (NetworkReady).
func (s *Server) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	runtimeReady := &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Status: true}
	// IsServing waits for the connection to be ready: bounded, a containerd
	// that is down reads as not ready instead of hanging the kubelet's probe.
	probeCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if serving, err := s.client.IsServing(probeCtx); err != nil || !serving {
		runtimeReady.Status = false
		runtimeReady.Reason = "ContainerdUnreachable"
		runtimeReady.Message = "containerd at " + s.cfg.ContainerdAddress + " does not answer"
		if err != nil {
			runtimeReady.Message += ": " + err.Error()
		}
	}
	networkReady := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true}
	if err := s.net.Ready(); err != nil {
		networkReady.Status = false
		networkReady.Reason = "NetworkPluginNotReady"
		networkReady.Message = err.Error()
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{runtimeReady, networkReady}},
		RuntimeHandlers: []*runtime.RuntimeHandler{{
			Name:     "",
			Features: s.features.handler(),
		}},
		Features: s.features.runtime(),
	}
	if req.GetVerbose() {
		info, err := s.statusInfo()
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

// RuntimeConfig tells the kubelet which cgroup driver to use, so that both
// agree on where pod cgroups live.
func (s *Server) RuntimeConfig(ctx context.Context, req *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	driver := runtime.CgroupDriver_CGROUPFS
	if s.cfg.EffectiveCgroupDriver() == "systemd" {
		driver = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig records the node's pod CIDR.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		if err := s.net.UpdatePodCIDR(cidr); err != nil {
			return nil, err
		}
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
