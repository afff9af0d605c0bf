package server

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec listCodec delegates to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// listCodec is gRPC's proto codec except for the answers to ListContainers
// and ListPodSandbox, which it writes from encodings of their items kept
// from earlier answers. The kubelet's PLEG lists every pod and container
// once a second; at 100 idle pods encoding those lists (their labels and
// annotations maps above all) was a fifth of crishim's CPU, for items that
// had not changed since the second before. A list item's fields are fixed
// when the pod or container is made, except its state, so an encoding is
// kept per ID and state; IDs are never reused.
//
// The answer is the kept encodings one after another, as the wire format
// of a repeated field is: gRPC writes them from the returned buffers
// without copying them together first. They are never changed once kept,
// which is what lets answers in flight share them.
type listCodec struct {
	base encoding.CodecV2

	mu    sync.Mutex
	items map[listKey]*listItem
	// gen counts list answers; an item not used in the last
	// listKeepAnswers of them is dropped, so the map follows the pods and
	// containers that exist.
	gen uint64
}

type listKey struct {
	kind  byte // 'c' container, 'p' pod sandbox
	id    string
	state int32
}

type listItem struct {
	enc  []byte // field tag, length and the item's encoding
	used uint64 // gen of the last answer that used it
}

// listKeepAnswers is how many list answers an unused item outlives: many
// more than the lists the kubelet makes between two of its relists (whose
// unfiltered lists use every live item), so live items stay.
const listKeepAnswers = 256

func newListCodec() *listCodec {
	return &listCodec{base: encoding.GetCodecV2("proto"), items: map[listKey]*listItem{}}
}

func (c *listCodec) Name() string { return c.base.Name() }

func (c *listCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c *listCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *runtime.ListContainersResponse:
		return marshalList(c, 'c', m.GetContainers(), func(x *runtime.Container) (string, int32) { return x.GetId(), int32(x.GetState()) })
	case *runtime.ListPodSandboxResponse:
		return marshalList(c, 'p', m.GetItems(), func(x *runtime.PodSandbox) (string, int32) { return x.GetId(), int32(x.GetState()) })
	}
	return c.base.Marshal(v)
}

// marshalList encodes items as field 1 of a list answer (the only field of
// both list responses) from kept item encodings, encoding and keeping the
// missing ones.
func marshalList[T proto.Message](c *listCodec, kind byte, items []T, key func(T) (string, int32)) (mem.BufferSlice, error) {
	if len(items) == 0 {
		// An empty answer of either kind is zero bytes.
		return c.base.Marshal(&runtime.ListContainersResponse{})
	}
	out := make(mem.BufferSlice, len(items))
	var missing []int
	c.mu.Lock()
	c.gen++
	gen := c.gen
	for i, it := range items {
		id, state := key(it)
		if e, ok := c.items[listKey{kind, id, state}]; ok {
			e.used = gen
			out[i] = mem.SliceBuffer(e.enc)
			continue
		}
		missing = append(missing, i)
	}
	c.mu.Unlock()

	made := make(map[listKey]*listItem, len(missing))
	for _, i := range missing {
		body, err := proto.Marshal(items[i])
		if err != nil {
			return nil, fmt.Errorf("encode list item: %w", err)
		}
		enc := protowire.AppendTag(make([]byte, 0, len(body)+protowire.SizeVarint(uint64(len(body)))+1), 1, protowire.BytesType)
		enc = protowire.AppendBytes(enc, body)
		out[i] = mem.SliceBuffer(enc)
		id, state := key(items[i])
		made[listKey{kind, id, state}] = &listItem{enc: enc, used: gen}
	}

	c.mu.Lock()
	for k, e := range made {
		c.items[k] = e
	}
	if gen%listKeepAnswers == 0 {
		for k, e := range c.items {
			if e.used < gen && gen-e.used > listKeepAnswers {
				delete(c.items, k)
			}
		}
	}
	c.mu.Unlock()
	return out, nil
}

// kept is how many item encodings are kept (tests).
func (c *listCodec) kept() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
