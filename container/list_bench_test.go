package container

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	crishimpb "github.com/crishim/crishim/proto"
)

// benchManager holds n running containers shaped like the kubelet's (labels,
// annotations, an image spec with annotations), without containerd: List
// and Status are served from the store alone.
func benchManager(n int) (*Manager, []string) {
	m := &Manager{containers: map[string]*entry{}}
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%064x", i)
		cfg := &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "app", Attempt: 0},
			Image:    &runtime.ImageSpec{Image: "sha256:" + id, UserSpecifiedImage: "busybox:1.36", Annotations: map[string]string{"a": "b"}},
			Labels: map[string]string{
				"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": fmt.Sprintf("pod-%d", i),
				"io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": id[:36],
			},
			Annotations: map[string]string{
				"io.kubernetes.container.hash": "1234", "io.kubernetes.container.restartCount": "0",
				"io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
			},
		}
		rec := &crishimpb.ContainerRecord{Id: id, SandboxId: "p" + id[1:], Name: id, ImageName: "docker.io/library/busybox:1.36",
			ImageRef: "docker.io/library/busybox@sha256:" + id, ImageId: "sha256:" + id, CreatedAt: int64(i) + 1}
		e := newEntry(id, rec, cfg, nil, &crishimpb.ContainerStatusRecord{StartedAt: int64(i) + 2})
		m.containers[id] = e
		ids = append(ids, id)
	}
	return m, ids
}

// BenchmarkList is one ListContainers as the server answers it: the list
// built and marshalled, with 200 containers (-benchmem gives the
// allocations per call).
func BenchmarkList(b *testing.B) {
	m, _ := benchManager(200)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		items, err := m.List(ctx, nil)
		if err != nil || len(items) != 200 {
			b.Fatalf("List: %d containers, %v", len(items), err)
		}
		if _, err := proto.Marshal(&runtime.ListContainersResponse{Containers: items}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatus is one ContainerStatus built and marshalled.
func BenchmarkStatus(b *testing.B) {
	m, ids := benchManager(200)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		st, _, err := m.Status(ctx, ids[i%len(ids)], false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(&runtime.ContainerStatusResponse{Status: st}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkListWire is ListContainers as the server's codec answers it:
// the list, and each item's stored encoding looked up.
func BenchmarkListWire(b *testing.B) {
	m, _ := benchManager(200)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		items, err := m.List(ctx, nil)
		if err != nil || len(items) != 200 {
			b.Fatalf("List: %d containers, %v", len(items), err)
		}
		for _, it := range items {
			if m.ListedWire(it) == nil {
				b.Fatalf("no encoding of %s", it.Id)
			}
		}
	}
}
