package server

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer creates a container in a ready pod.
func (s *Server) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	switch {
	case req.GetPodSandboxId() == "":
		return nil, invalid("pod sandbox id is required")
	case req.GetConfig() == nil:
		return nil, invalid("container config is required")
	}
	id, err := s.containers.Create(ctx, req.GetPodSandboxId(), req.GetConfig(), req.GetSandboxConfig())
	if err != nil {
		return nil, err
	}
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer starts a created container.
func (s *Server) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container id is required")
	}
	if err := s.containers.Start(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtime.StartContainerResponse{}, nil
}

// StopContainer stops a container within its grace period; stopping an
// absent or exited container succeeds.
func (s *Server) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container id is required")
	}
	if req.GetTimeout() < 0 {
		return nil, invalid("timeout %d must not be negative", req.GetTimeout())
	}
	if err := s.containers.Stop(ctx, req.GetContainerId(), req.GetTimeout()); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

// RemoveContainer removes a container, killing it if it still runs.
func (s *Server) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container id is required")
	}
	if err := s.containers.Remove(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

// ContainerStatus reports one container.
func (s *Server) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container id is required")
	}
	st, info, err := s.containers.Status(ctx, req.GetContainerId(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatusResponse{Status: st, Info: info}, nil
}

// ListContainers lists containers matching the filter.
func (s *Server) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	items, err := s.containers.List(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtime.ListContainersResponse{Containers: items}, nil
}

// ExecSync runs a command in a container and returns its output.
func (s *Server) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	switch {
	case req.GetContainerId() == "":
		return nil, invalid("container id is required")
	case len(req.GetCmd()) == 0:
		return nil, invalid("command is required")
	case req.GetTimeout() < 0:
		return nil, invalid("timeout %d must not be negative", req.GetTimeout())
	}
	return s.containers.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), req.GetTimeout())
}
