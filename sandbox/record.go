package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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

// updateRecord changes the persisted record of pod p's container c with
// change. A record that cannot be read is rewritten from p, so that an
// Unknown pod's Stop can still be recorded.
func updateRecord(ctx context.Context, c containerd.Container, p *pod, change func(*crishimpb.SandboxRecord)) error {
	return c.Update(ctx, func(_ context.Context, _ *containerd.Client, info *containers.Container) error {
		rec, _, err := readRecord(*info)
		if err != nil {
			if rec, err = newRecord(p); err != nil {
				return err
			}
		}
		change(rec)
		anyRec, err := typeurl.MarshalAny(rec)
		if err != nil {
			return fmt.Errorf("encode sandbox record of %s: %w", info.ID, err)
		}
		if info.Extensions == nil {
			info.Extensions = map[string]typeurl.Any{}
		}
		info.Extensions[ExtensionRecord] = anyRec
		return nil
	})
}

// recordCopyName is the copy of a pod's record Run leaves in the pod
// directory: should containerd's become unreadable, it still tells
// Recover the pod's config and network namespace, which its Stop needs
// to release the pod's address, veth and port mappings.
const recordCopyName = "record.pb"

func (m *Manager) recordCopyPath(id string) string {
	return filepath.Join(m.podDir(id), recordCopyName)
}

// writeRecordCopy writes rec to path, readable by root alone: the pod
// config is the kubelet's, not the containers'.
func writeRecordCopy(path string, rec *crishimpb.SandboxRecord) error {
	data, err := proto.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode sandbox record of %s: %w", rec.GetId(), err)
	}
	return writeFileMode(path, data, 0o600)
}

// readRecordCopy reads what writeRecordCopy wrote.
func readRecordCopy(path string) (*crishimpb.SandboxRecord, *runtime.PodSandboxConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read sandbox record copy: %w", err)
	}
	rec := &crishimpb.SandboxRecord{}
	if err := proto.Unmarshal(data, rec); err != nil {
		return nil, nil, fmt.Errorf("decode sandbox record copy %s: %w", path, err)
	}
	cfg := &runtime.PodSandboxConfig{}
	if err := proto.Unmarshal(rec.GetConfig(), cfg); err != nil {
		return nil, nil, fmt.Errorf("decode pod config in %s: %w", path, err)
	}
	return rec, cfg, nil
}
