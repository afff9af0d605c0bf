package server

import (
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestEncodeItemsIsTheResponse checks that a list response put together
// from its items' encodings decodes to the response itself, and that an
// item without an encoding makes the codec marshal instead.
func TestEncodeItemsIsTheResponse(t *testing.T) {
	resp := &runtime.ListContainersResponse{}
	for _, id := range []string{"a", "b", "c"} {
		resp.Containers = append(resp.Containers, &runtime.Container{
			Id: id, PodSandboxId: "p" + id, State: runtime.ContainerState_CONTAINER_RUNNING,
			Metadata: &runtime.ContainerMetadata{Name: id},
			Labels:   map[string]string{"k": id, "x": "y"}, CreatedAt: 7,
		})
	}
	wire := func(c *runtime.Container) []byte {
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, ok := encodeItems(resp.Containers, wire)
	if !ok {
		t.Fatal("no encoding")
	}
	got := &runtime.ListContainersResponse{}
	if err := proto.Unmarshal(b, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, resp) {
		t.Fatalf("decoded %v, want %v", got, resp)
	}
	if b, ok := encodeItems([]*runtime.Container{}, wire); !ok || len(b) != 0 {
		t.Fatalf("empty list: %x, %v", b, ok)
	}
	if _, ok := encodeItems(resp.Containers, func(c *runtime.Container) []byte {
		if c.Id == "b" {
			return nil
		}
		return wire(c)
	}); ok {
		t.Fatal("encoded a list with an item that has no encoding")
	}
}
