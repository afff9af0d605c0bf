package server

import (
	"github.com/containerd/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Clients may name a pod or a container by its full ID or, as crictl lets
// its users do, by a unique prefix of it. Every handler resolves what it
// was given here, once, before it calls a domain package, and the domain
// packages match full IDs only: when one half of an RPC resolved a prefix
// and the other half matched it exactly, RemovePodSandbox with a prefix
// removed the pod and left its containers behind.
//
// Resolution follows idprefix: an empty ID or an ambiguous prefix is
// InvalidArgument, an ID that names nothing NotFound.

// podID resolves a pod sandbox ID or unique prefix to the full ID.
func (s *Server) podID(id string) (string, error) {
	if id == "" {
		return "", invalid("pod sandbox id is required")
	}
	return s.sandboxes.ResolveID(id)
}

// containerID resolves a container ID or unique prefix to the full ID.
func (s *Server) containerID(id string) (string, error) {
	if id == "" {
		return "", invalid("container id is required")
	}
	return s.containers.ResolveID(id)
}

// podIDToClean is podID for StopPodSandbox and RemovePodSandbox, which
// succeed on a pod that is gone: an ID that names no pod comes back as
// given, so that containers still recorded under a gone pod's full ID are
// cleaned up all the same.
func (s *Server) podIDToClean(id string) (string, error) {
	full, err := s.podID(id)
	if errdefs.IsNotFound(err) {
		return id, nil
	}
	return full, err
}

// A list filter never fails. Like containerd's CRI, a filter ID that
// names exactly one object (in full or as a unique prefix) selects it; one
// that names no single object (unknown, or an ambiguous prefix) stays as
// given and so matches nothing.

func (s *Server) filterPodID(id string) string {
	if id == "" {
		return ""
	}
	if full, err := s.sandboxes.ResolveID(id); err == nil {
		return full
	}
	return id
}

func (s *Server) filterContainerID(id string) string {
	if id == "" {
		return ""
	}
	if full, err := s.containers.ResolveID(id); err == nil {
		return full
	}
	return id
}

func (s *Server) podFilter(f *runtime.PodSandboxFilter) *runtime.PodSandboxFilter {
	if f.GetId() == "" {
		return f
	}
	f = proto.Clone(f).(*runtime.PodSandboxFilter)
	f.Id = s.filterPodID(f.Id)
	return f
}

func (s *Server) podStatsFilter(f *runtime.PodSandboxStatsFilter) *runtime.PodSandboxStatsFilter {
	if f.GetId() == "" {
		return f
	}
	f = proto.Clone(f).(*runtime.PodSandboxStatsFilter)
	f.Id = s.filterPodID(f.Id)
	return f
}

func (s *Server) containerFilter(f *runtime.ContainerFilter) *runtime.ContainerFilter {
	if f.GetId() == "" && f.GetPodSandboxId() == "" {
		return f
	}
	f = proto.Clone(f).(*runtime.ContainerFilter)
	f.Id = s.filterContainerID(f.Id)
	f.PodSandboxId = s.filterPodID(f.PodSandboxId)
	return f
}

func (s *Server) containerStatsFilter(f *runtime.ContainerStatsFilter) *runtime.ContainerStatsFilter {
	if f.GetId() == "" && f.GetPodSandboxId() == "" {
		return f
	}
	f = proto.Clone(f).(*runtime.ContainerStatsFilter)
	f.Id = s.filterContainerID(f.Id)
	f.PodSandboxId = s.filterPodID(f.PodSandboxId)
	return f
}
