package server

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RunPodSandbox creates and starts a pod's pause container and network.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	if req.GetConfig() == nil {
		return nil, invalid("pod sandbox config is required")
	}
	id, err := s.sandboxes.Run(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// StopPodSandbox stops the pod's containers, then its pause container and
// network. Stopping an absent pod succeeds, as the CRI requires.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	id, err := s.podIDToClean(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if err := s.containers.StopPod(ctx, id); err != nil {
		return nil, err
	}
	if err := s.sandboxes.Stop(ctx, id); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes the pod's containers and then the pod itself.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	id, err := s.podIDToClean(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if err := s.containers.RemovePod(ctx, id); err != nil {
		return nil, err
	}
	if err := s.sandboxes.Remove(ctx, id); err != nil {
		return nil, err
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}

// PodSandboxStatus reports one pod.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	id, err := s.podID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	// Taken before the statuses are read: the kubelet's evented PLEG caches
	// this answer as the pod's state at this time, and an event stamped
	// later replaces it. A time taken after the reads would make a
	// transition in between (its event stamped earlier) lose to this older
	// answer until the next relist, minutes later.
	at := time.Now().UnixNano()
	st, info, err := s.sandboxes.Status(ctx, id, req.GetVerbose())
	if err != nil {
		return nil, err
	}
	// With a timestamp, the kubelet's evented PLEG takes the containers'
	// statuses from here instead of listing them itself.
	return &runtime.PodSandboxStatusResponse{
		Status:             st,
		Info:               info,
		ContainersStatuses: s.containers.PodStatuses(st.GetId()),
		Timestamp:          at,
	}, nil
}

// ListPodSandbox lists pods matching the filter.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	items, err := s.sandboxes.List(ctx, s.podFilter(req.GetFilter()))
	if err != nil {
		return nil, err
	}
	return &runtime.ListPodSandboxResponse{Items: items}, nil
}
