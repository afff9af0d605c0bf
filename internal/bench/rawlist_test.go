package bench

import (
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The raw codec counts the items of either list without decoding them,
// and refuses a reply cut short.
func TestRawCodecCountsListItems(t *testing.T) {
	pods, err := proto.Marshal(&runtime.ListPodSandboxResponse{Items: []*runtime.PodSandbox{
		{Id: "p1", Labels: map[string]string{"app": "web"}},
		{Id: "p2", State: runtime.PodSandboxState_SANDBOX_NOTREADY},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctrs, err := proto.Marshal(&runtime.ListContainersResponse{Containers: []*runtime.Container{
		{Id: "c1", PodSandboxId: "p1", Annotations: map[string]string{"hash": "1"}},
		{Id: "c2", PodSandboxId: "p1"}, {Id: "c3", PodSandboxId: "p2"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		reply []byte
		items int
	}{{"pods", pods, 2}, {"containers", ctrs, 3}, {"empty", nil, 0}} {
		var r rawReply
		if err := (rawCodec{}).Unmarshal(c.reply, &r); err != nil || r.items != c.items {
			t.Errorf("%s: %d items, %v; want %d", c.name, r.items, err, c.items)
		}
	}
	var r rawReply
	if err := (rawCodec{}).Unmarshal(ctrs[:len(ctrs)-1], &r); err == nil {
		t.Errorf("a truncated reply decoded as %d items", r.items)
	}
}
