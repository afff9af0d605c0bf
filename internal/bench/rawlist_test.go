package bench

import (
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestRawCodecCountsListItems(t *testing.T) {
	resp := &runtime.ListContainersResponse{}
	for _, id := range []string{"a", "b", "c"} {
		resp.Containers = append(resp.Containers, &runtime.Container{
			Id: id, PodSandboxId: "p" + id, Labels: map[string]string{"k": id},
			Metadata: &runtime.ContainerMetadata{Name: id},
		})
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var r rawReply
	if err := (rawCodec{}).Unmarshal(b, &r); err != nil || r.items != 3 {
		t.Fatalf("Unmarshal: %d items, %v; want 3", r.items, err)
	}
	if err := (rawCodec{}).Unmarshal(b[:len(b)-1], &r); err == nil {
		t.Fatalf("a truncated reply decoded as %d items", r.items)
	}
	if err := (rawCodec{}).Unmarshal(nil, &r); err != nil || r.items != 0 {
		t.Fatalf("empty reply: %d items, %v", r.items, err)
	}
}
