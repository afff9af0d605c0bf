package server

import (
	"context"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/events"
)

// wireEvents makes the domain managers publish to the server's broker.
func (s *Server) wireEvents() {
	s.events = events.NewBroker(events.DefaultBuffer, s.eventResponse)
	s.sandboxes.SetPublisher(s.events)
	s.containers.SetPublisher(s.events)
}

// eventResponse fills an event with what the kubelet's evented PLEG
// rebuilds the pod from: the pod's status and all its containers'.
func (s *Server) eventResponse(ev events.Event) *runtime.ContainerEventResponse {
	resp := &runtime.ContainerEventResponse{
		ContainerId:        ev.ID,
		ContainerEventType: ev.Type,
		PodSandboxStatus:   ev.Sandbox,
	}
	if resp.PodSandboxStatus == nil {
		st, _, err := s.sandboxes.Status(context.Background(), ev.SandboxID, false)
		if err != nil {
			logrus.WithError(err).WithFields(logrus.Fields{"pod": ev.SandboxID, "container": ev.ID}).Warn("event for an unknown pod dropped")
			return nil
		}
		resp.PodSandboxStatus = st
	}
	resp.ContainersStatuses = s.containers.PodStatuses(ev.SandboxID)
	return resp
}

// GetContainerEvents streams container and pod lifecycle events until the
// client goes away. A client that cannot keep up is cut off with
// ResourceExhausted rather than sent a stream with holes in it.
func (s *Server) GetContainerEvents(req *runtime.GetEventsRequest, stream runtime.RuntimeService_GetContainerEventsServer) error {
	sub := s.events.Subscribe()
	defer sub.Close()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				if err := sub.Err(); err != nil {
					return status.Error(codes.ResourceExhausted, err.Error())
				}
				return nil
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
