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

// TestRecentListsResendUnchangedLists checks that a list of the very same
// items is answered with the bytes kept from before, without asking for
// the items' encodings, and that any other list (an item replaced, one
// fewer, another order) is encoded afresh and decodes to itself.
func TestRecentListsResendUnchangedLists(t *testing.T) {
	item := func(id string) *runtime.PodSandbox {
		return &runtime.PodSandbox{Id: id, State: runtime.PodSandboxState_SANDBOX_READY, Labels: map[string]string{"app": id}}
	}
	a, b, c := item("a"), item("b"), item("c")
	asked := 0
	wire := func(p *runtime.PodSandbox) []byte {
		asked++
		w, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	r := &recentLists[*runtime.PodSandbox]{}
	check := func(items []*runtime.PodSandbox, wantAsked int) []byte {
		t.Helper()
		asked = 0
		w, ok := r.encode(items, wire)
		if !ok {
			t.Fatal("no encoding")
		}
		if asked != wantAsked {
			t.Errorf("%d items' encodings asked for, want %d", asked, wantAsked)
		}
		got := &runtime.ListPodSandboxResponse{}
		if err := proto.Unmarshal(w, got); err != nil {
			t.Fatal(err)
		}
		if want := (&runtime.ListPodSandboxResponse{Items: items}); !proto.Equal(got, want) {
			t.Errorf("decoded %v, want %v", got, want)
		}
		return w
	}
	first := check([]*runtime.PodSandbox{a, b, c}, 3)
	// A new slice of the same items, as each List call makes.
	if again := check([]*runtime.PodSandbox{a, b, c}, 0); &again[0] != &first[0] {
		t.Error("an unchanged list was encoded again")
	}
	check([]*runtime.PodSandbox{a, c}, 2)
	check([]*runtime.PodSandbox{a, b, c}, 0) // the two kept: all, and all but b
	bNotReady := item("b")
	bNotReady.State = runtime.PodSandboxState_SANDBOX_NOTREADY
	check([]*runtime.PodSandbox{a, bNotReady, c}, 3)
	check([]*runtime.PodSandbox{c, b, a}, 3)
	check([]*runtime.PodSandbox{}, 0)
}
