package server

import (
	"context"

	"github.com/containerd/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer creates a container in a ready pod.
func (s *Server) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	if req.GetConfig() == nil {
		return nil, invalid("container config is required")
	}
	podID, err := s.podID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	cfg := req.GetConfig()
	// A pid namespace shared with another container names it by ID too.
	if ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); ns.GetPid() == runtime.NamespaceMode_TARGET && ns.GetTargetId() != "" {
		target, err := s.containerID(ns.GetTargetId())
		if err != nil {
			return nil, err
		}
		cfg = proto.Clone(cfg).(*runtime.ContainerConfig)
		cfg.Linux.SecurityContext.NamespaceOptions.TargetId = target
	}
	id, err := s.containers.Create(ctx, podID, cfg, req.GetSandboxConfig())
	if err != nil {
		return nil, err
	}
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer starts a created container.
func (s *Server) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	id, err := s.containerID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.containers.Start(ctx, id); err != nil {
		return nil, err
	}
	return &runtime.StartContainerResponse{}, nil
}

// StopContainer stops a container within its grace period; stopping an
// absent or exited container succeeds.
func (s *Server) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	if req.GetTimeout() < 0 {
		return nil, invalid("timeout %d must not be negative", req.GetTimeout())
	}
	id, err := s.containerID(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtime.StopContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := s.containers.Stop(ctx, id, req.GetTimeout()); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

// RemoveContainer removes a container, killing it if it still runs.
func (s *Server) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	id, err := s.containerID(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtime.RemoveContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := s.containers.Remove(ctx, id); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

// ContainerStatus reports one container.
func (s *Server) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	id, err := s.containerID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, info, err := s.containers.Status(ctx, id, req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatusResponse{Status: st, Info: info}, nil
}

// ListContainers lists containers matching the filter.
func (s *Server) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	items, err := s.containers.List(ctx, s.containerFilter(req.GetFilter()))
	if err != nil {
		return nil, err
	}
	return &runtime.ListContainersResponse{Containers: items}, nil
}

// ExecSync runs a command in a container and returns its output.
func (s *Server) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	switch {
	case len(req.GetCmd()) == 0:
		return nil, invalid("command is required")
	case req.GetTimeout() < 0:
		return nil, invalid("timeout %d must not be negative", req.GetTimeout())
	}
	id, err := s.containerID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return s.containers.ExecSync(ctx, id, req.GetCmd(), req.GetTimeout())
}
