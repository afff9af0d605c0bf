package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
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
func (s *Server) eventResponse(ev events.Event) (*runtime.ContainerEventResponse, error) {
	resp := &runtime.ContainerEventResponse{
		ContainerId:        ev.ID,
		ContainerEventType: ev.Type,
		PodSandboxStatus:   ev.Sandbox,
	}
	if resp.PodSandboxStatus == nil {
		st, _, err := s.sandboxes.Status(context.Background(), ev.SandboxID, false)
		if err != nil {
			logrus.WithError(err).WithFields(logrus.Fields{"pod": ev.SandboxID, "container": ev.ID, "event": ev.Type}).
				Warn("event for an unknown pod: ending every event stream so that subscribers relist")
			return nil, fmt.Errorf("status of pod %s: %w", ev.SandboxID, err)
		}
		resp.PodSandboxStatus = st
	}
	resp.ContainersStatuses = s.containers.PodStatuses(ev.SandboxID)
	return resp, nil
}

// GetContainerEvents streams container and pod lifecycle events until the
// client goes away or crishim shuts down. The response headers go out once
// the subscription is registered: a client that waits for them knows that
// every later transition reaches it. A client that cannot keep up, or that
// would miss an event, is cut off with an error rather than sent a stream
// with holes in it, so that it lists again.
func (s *Server) GetContainerEvents(req *runtime.GetEventsRequest, stream runtime.RuntimeService_GetContainerEventsServer) error {
	sub := s.events.Subscribe()
	defer sub.Close()
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return subscriptionError(sub.Err())
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// subscriptionError is the status a stream the broker ended finishes with.
func subscriptionError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, events.ErrSlowSubscriber):
		logrus.WithField("rpc", "GetContainerEvents").Warn("event subscriber fell behind; its stream is ended so that it relists")
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, events.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	default:
		return status.Error(codes.Aborted, err.Error())
	}
}
