package server

import (
	"context"

	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/stats"
)

// ContainerStats reports one container's resource usage.
func (s *Server) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	id, err := s.containerID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containers.Stats(ctx, id)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the running containers matching the filter.
func (s *Server) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	list, err := s.containers.ListStats(ctx, s.containerStatsFilter(req.GetFilter()))
	if err != nil {
		return nil, err
	}
	return &runtime.ListContainerStatsResponse{Stats: list}, nil
}

// PodSandboxStats reports one pod: the sum over its containers and its
// network.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	id, err := s.podID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.podStats(ctx, id)
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: st}, nil
}

func (s *Server) podStats(ctx context.Context, id string) (*runtime.PodSandboxStats, error) {
	cs, sum, err := s.containers.PodStats(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.sandboxes.Stats(ctx, id, cs, sum)
}

// ListPodSandboxStats reports the ready pods matching the filter. A pod
// that goes away while it is measured is left out, not an error.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	list, err := s.listPodStats(ctx, s.podStatsFilter(req.GetFilter()))
	if err != nil {
		return nil, err
	}
	return &runtime.ListPodSandboxStatsResponse{Stats: list}, nil
}

func (s *Server) listPodStats(ctx context.Context, filter *runtime.PodSandboxStatsFilter) ([]*runtime.PodSandboxStats, error) {
	var out []*runtime.PodSandboxStats
	for _, id := range s.sandboxes.StatsIDs(filter) {
		st, err := s.podStats(ctx, id)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// ListMetricDescriptors describes what ListPodSandboxMetrics reports.
func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	return &runtime.ListMetricDescriptorsResponse{Descriptors: stats.Descriptors()}, nil
}

// ListPodSandboxMetrics reports every ready pod's stats as cAdvisor-named
// metrics.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, req *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	list, err := s.podMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtime.ListPodSandboxMetricsResponse{PodMetrics: list}, nil
}

func (s *Server) podMetrics(ctx context.Context) ([]*runtime.PodSandboxMetrics, error) {
	list, err := s.listPodStats(ctx, nil)
	if err != nil {
		return nil, err
	}
	images := s.containers.ImageNames()
	out := make([]*runtime.PodSandboxMetrics, 0, len(list))
	for _, ps := range list {
		out = append(out, stats.PodMetrics(ps, images))
	}
	return out, nil
}

// The Stream* variants send the whole list as one message: crishim's
// lists are small enough, and the client sees the same as with List*.

// StreamPodSandboxes sends ListPodSandbox's result.
func (s *Server) StreamPodSandboxes(req *runtime.StreamPodSandboxesRequest, stream runtime.RuntimeService_StreamPodSandboxesServer) error {
	items, err := s.sandboxes.List(stream.Context(), s.podFilter(req.GetFilter()))
	if err != nil {
		return err
	}
	return stream.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: items})
}

// StreamContainers sends ListContainers' result.
func (s *Server) StreamContainers(req *runtime.StreamContainersRequest, stream runtime.RuntimeService_StreamContainersServer) error {
	items, err := s.containers.List(stream.Context(), s.containerFilter(req.GetFilter()))
	if err != nil {
		return err
	}
	return stream.Send(&runtime.StreamContainersResponse{Containers: items})
}

// StreamContainerStats sends ListContainerStats' result.
func (s *Server) StreamContainerStats(req *runtime.StreamContainerStatsRequest, stream runtime.RuntimeService_StreamContainerStatsServer) error {
	items, err := s.containers.ListStats(stream.Context(), s.containerStatsFilter(req.GetFilter()))
	if err != nil {
		return err
	}
	return stream.Send(&runtime.StreamContainerStatsResponse{ContainerStats: items})
}

// StreamPodSandboxStats sends ListPodSandboxStats' result.
func (s *Server) StreamPodSandboxStats(req *runtime.StreamPodSandboxStatsRequest, stream runtime.RuntimeService_StreamPodSandboxStatsServer) error {
	items, err := s.listPodStats(stream.Context(), s.podStatsFilter(req.GetFilter()))
	if err != nil {
		return err
	}
	return stream.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: items})
}

// StreamPodSandboxMetrics sends ListPodSandboxMetrics' result.
func (s *Server) StreamPodSandboxMetrics(req *runtime.StreamPodSandboxMetricsRequest, stream runtime.RuntimeService_StreamPodSandboxMetricsServer) error {
	items, err := s.podMetrics(stream.Context())
	if err != nil {
		return err
	}
	return stream.Send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: items})
}

// StreamImages sends ListImages' result.
func (is *imageService) StreamImages(req *runtime.StreamImagesRequest, stream runtime.ImageService_StreamImagesServer) error {
	items, err := is.s.images.List(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return stream.Send(&runtime.StreamImagesResponse{Images: items})
}
