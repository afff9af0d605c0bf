package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	crishimpb "github.com/crishim/crishim/proto"
)

// How crishim finds its sandboxes among containerd's containers.
const (
	LabelKind       = "io.crishim.kind"
	KindSandbox     = "sandbox"
	ExtensionRecord = "crishim.sandbox"
)

// newRecord is the persisted form of a pod as Run creates it.
func newRecord(p *pod) (*crishimpb.SandboxRecord, error) {
	cfg, err := proto.Marshal(p.cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config of sandbox %s: %w", p.id, err)
	}
	return &crishimpb.SandboxRecord{
		Id:             p.id,
		Name:           p.name,
		Config:         cfg,
		RuntimeHandler: p.handler,
		NetnsPath:      p.netnsPath,
		CreatedAt:      p.createdAt.UnixNano(),
		SandboxImage:   p.image,
	}, nil
}

// readRecord decodes the sandbox record from a containerd container's extensions.
func readRecord(info containers.Container) (*crishimpb.SandboxRecord, *runtime.PodSandboxConfig, error) {
	anyRec, ok := info.Extensions[ExtensionRecord]
	if !ok || anyRec == nil {
		return nil, nil, fmt.Errorf("container %s has no %s extension", info.ID, ExtensionRecord)
	}
	rec := &crishimpb.SandboxRecord{}
	if err := typeurl.UnmarshalTo(anyRec, rec); err != nil {
		return nil, nil, fmt.Errorf("decode sandbox record of %s: %w", info.ID, err)
	}
	cfg := &runtime.PodSandboxConfig{}
	if err := proto.Unmarshal(rec.GetConfig(), cfg); err != nil {
		return nil, nil, fmt.Errorf("decode pod config of %s: %w", info.ID, err)
	}
	return rec, cfg, nil
}

// updateRecord changes the persisted record of container c with change.
func updateRecord(ctx context.Context, c containerd.Container, change func(*crishimpb.SandboxRecord)) error {
	return c.Update(ctx, func(_ context.Context, _ *containerd.Client, info *containers.Container) error {
		rec, _, err := readRecord(*info)
		if err != nil {
			return err
		}
		change(rec)
		anyRec, err := typeurl.MarshalAny(rec)
		if err != nil {
			return fmt.Errorf("encode sandbox record of %s: %w", info.ID, err)
		}
		info.Extensions[ExtensionRecord] = anyRec
		return nil
	})
}
