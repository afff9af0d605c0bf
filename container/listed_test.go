package container

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestListedWireFollowsTransitions checks that the encoding the server
// sends for a listed container is that container as listed, and that a
// transition retires the old item's encoding rather than serve it stale.
func TestListedWireFollowsTransitions(t *testing.T) {
	m, ids := benchManager(3)
	ctx := context.Background()
	items, err := m.List(ctx, &runtime.ContainerFilter{Id: ids[1]})
	if err != nil || len(items) != 1 {
		t.Fatalf("List: %v, %v", items, err)
	}
	before := items[0]
	if before.State != runtime.ContainerState_CONTAINER_RUNNING || before.Image.GetImage() != "docker.io/library/busybox:1.36" {
		t.Fatalf("listed %v", before)
	}
	decoded := &runtime.Container{}
	if err := proto.Unmarshal(m.ListedWire(before), decoded); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(decoded, before) {
		t.Fatalf("encoding decodes to %v, want %v", decoded, before)
	}

	if !m.markUnknown(m.containers[ids[1]], errors.New("test")) {
		t.Fatal("markUnknown refused")
	}
	if w := m.ListedWire(before); w != nil {
		t.Fatal("the item listed before the transition still has an encoding")
	}
	if before.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatal("a transition changed an item already handed out")
	}
	items, _ = m.List(ctx, &runtime.ContainerFilter{Id: ids[1]})
	decoded.Reset()
	if err := proto.Unmarshal(m.ListedWire(items[0]), decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.State != runtime.ContainerState_CONTAINER_UNKNOWN || !proto.Equal(decoded, items[0]) {
		t.Fatalf("after the transition the encoding decodes to %v, want %v", decoded, items[0])
	}
	// The filter sees the transition too.
	items, _ = m.List(ctx, &runtime.ContainerFilter{State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING}})
	if len(items) != 2 {
		t.Fatalf("%d running containers listed, want 2", len(items))
	}
}
