package sandbox

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestListedItemsFollowState checks that ListPodSandbox's shared items and
// the encodings the server sends of them are the pod as listed, and that a
// state change lists a new item instead of changing one handed out.
func TestListedItemsFollowState(t *testing.T) {
	m := &Manager{store: newStore()}
	p := &pod{
		id: "p1", handler: "runc", createdAt: time.Unix(0, 42),
		cfg: &runtime.PodSandboxConfig{
			Metadata:    &runtime.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"},
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"note": "x"},
		},
		state: stateReady,
	}
	m.store.add(p)
	list := func() *runtime.PodSandbox {
		t.Helper()
		items, err := m.List(context.Background(), nil)
		if err != nil || len(items) != 1 {
			t.Fatalf("List: %v, %v", items, err)
		}
		decoded := &runtime.PodSandbox{}
		if err := proto.Unmarshal(m.ListedWire(items[0]), decoded); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(decoded, items[0]) {
			t.Fatalf("encoding decodes to %v, want %v", decoded, items[0])
		}
		return items[0]
	}
	ready := list()
	if ready.State != runtime.PodSandboxState_SANDBOX_READY || ready.Labels["app"] != "web" || ready.CreatedAt != 42 {
		t.Fatalf("listed %v", ready)
	}
	if again := list(); again != ready {
		t.Fatal("a second list made a new item for an unchanged pod")
	}
	m.pauseKilled(p)
	notReady := list()
	if notReady.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("after the pause was killed: listed %v", notReady)
	}
	if ready.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatal("a state change altered an item already handed out")
	}
	m.store.delete(p)
	if m.ListedWire(notReady) != nil {
		t.Fatal("a removed pod's item still has an encoding")
	}
}
