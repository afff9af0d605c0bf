package server

import (
	"context"

	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources changes a container's cgroup limits.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	id, err := s.containerID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.containers.UpdateResources(ctx, id, req.GetLinux()); err != nil {
		return nil, err
	}
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

// UpdatePodSandboxResources is how the kubelet announces a pod's new
// resource totals (in-place resize). crishim places no limit on the pod
// level itself: the kubelet owns the pod cgroup and has already resized
// it, and each container's own limits come with
// UpdateContainerResources. So the request is checked and logged only.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	id, err := s.podID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	sb, err := s.sandboxes.Get(id)
	if err != nil {
		return nil, err
	}
	logrus.WithFields(logrus.Fields{
		"pod":          sb.ID,
		"memory_limit": req.GetResources().GetMemoryLimitInBytes(),
		"cpu_quota":    req.GetResources().GetCpuQuota(),
		"cpu_shares":   req.GetResources().GetCpuShares(),
	}).Info("pod sandbox resources updated")
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}

// ReopenContainerLog starts a new log file at the container's log path
// after the kubelet rotated the old one.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	id, err := s.containerID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.containers.ReopenLog(ctx, id); err != nil {
		return nil, err
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}
