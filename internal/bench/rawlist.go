package bench

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// rawReply is a list response left undecoded but for counting its items.
// Timing a list call with it leaves out the client's protobuf decoding of
// hundreds of items, so the scale round can tell the runtime's and the
// transport's part of a list's latency from the part every client pays
// itself (the kubelet decodes the same bytes).
type rawReply struct{ items int }

// rawCodec encodes requests as protobuf and only counts a reply's items.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot encode %T", v)
	}
	return proto.Marshal(m)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	r, ok := v.(*rawReply)
	if !ok {
		return fmt.Errorf("raw codec: cannot decode into %T", v)
	}
	n, err := countField1(data)
	r.items = n
	return err
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// invokeRaw calls method with req and returns how many top-level field-1
// entries (the items of a list response) the undecoded reply holds.
func invokeRaw(ctx context.Context, conn grpc.ClientConnInterface, method string, req proto.Message) (int, error) {
	var reply rawReply
	if err := conn.Invoke(ctx, method, req, &reply, grpc.ForceCodec(rawCodec{})); err != nil {
		return 0, err
	}
	return reply.items, nil
}

// countField1 walks a message's top-level fields without decoding them.
func countField1(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		b = b[l:]
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		b = b[l:]
		if num == 1 {
			n++
		}
	}
	return n, nil
}
