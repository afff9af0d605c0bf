package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testContainer(id string, state runtime.ContainerState) *runtime.Container {
	return &runtime.Container{
		Id: id, PodSandboxId: "pod-" + id, State: state, CreatedAt: 42,
		Metadata:    &runtime.ContainerMetadata{Name: "app", Attempt: 1},
		Image:       &runtime.ImageSpec{Image: "busybox"},
		ImageRef:    "sha256:abc",
		ImageId:     "sha256:def",
		Labels:      map[string]string{"io.kubernetes.pod.name": "p-" + id, "io.kubernetes.container.name": "app"},
		Annotations: map[string]string{"io.kubernetes.container.hash": "1234", "io.kubernetes.container.restartCount": "0"},
	}
}

func testPod(id string, state runtime.PodSandboxState) *runtime.PodSandbox {
	return &runtime.PodSandbox{
		Id: id, State: state, CreatedAt: 7, RuntimeHandler: "runc",
		Metadata:    &runtime.PodSandboxMetadata{Name: "p-" + id, Uid: "uid-" + id, Namespace: "default"},
		Labels:      map[string]string{"io.kubernetes.pod.uid": "uid-" + id},
		Annotations: map[string]string{"kubernetes.io/config.source": "file"},
	}
}

// decode joins the buffers gRPC would write and parses them as want's type.
func decode[T proto.Message](t *testing.T, data mem.BufferSlice, into T) T {
	t.Helper()
	if err := proto.Unmarshal(data.Materialize(), into); err != nil {
		t.Fatalf("decode %T: %v", into, err)
	}
	return into
}

// TestListCodecAnswersAsProto: list answers written from kept item
// encodings parse back to what was listed, on the first answer, when the
// items are kept, for a subset in another order, after a state change, and
// empty; other messages are encoded as gRPC's proto codec does.
func TestListCodecAnswersAsProto(t *testing.T) {
	c := newListCodec()
	check := func(what string, resp proto.Message, into proto.Message) {
		t.Helper()
		data, err := c.Marshal(resp)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := decode(t, data, into); !proto.Equal(got, resp) {
			t.Fatalf("%s: decoded %v, want %v", what, got, resp)
		}
	}
	c1, c2, c3 := testContainer("c1", runtime.ContainerState_CONTAINER_RUNNING), testContainer("c2", runtime.ContainerState_CONTAINER_RUNNING), testContainer("c3", runtime.ContainerState_CONTAINER_CREATED)
	all := &runtime.ListContainersResponse{Containers: []*runtime.Container{c1, c2, c3}}
	check("first answer", all, &runtime.ListContainersResponse{})
	if n := c.kept(); n != 3 {
		t.Fatalf("%d item encodings kept after listing 3 containers, want 3", n)
	}
	check("kept answer", all, &runtime.ListContainersResponse{})
	check("subset, reordered", &runtime.ListContainersResponse{Containers: []*runtime.Container{c3, c1}}, &runtime.ListContainersResponse{})
	exited := testContainer("c1", runtime.ContainerState_CONTAINER_EXITED)
	check("state changed", &runtime.ListContainersResponse{Containers: []*runtime.Container{exited, c2, c3}}, &runtime.ListContainersResponse{})
	check("empty", &runtime.ListContainersResponse{}, &runtime.ListContainersResponse{})

	pods := &runtime.ListPodSandboxResponse{Items: []*runtime.PodSandbox{testPod("p1", runtime.PodSandboxState_SANDBOX_READY), testPod("c1", runtime.PodSandboxState_SANDBOX_READY)}}
	check("pods", pods, &runtime.ListPodSandboxResponse{})
	check("pods kept", pods, &runtime.ListPodSandboxResponse{})
	notReady := &runtime.ListPodSandboxResponse{Items: []*runtime.PodSandbox{testPod("p1", runtime.PodSandboxState_SANDBOX_NOTREADY)}}
	check("pod state changed", notReady, &runtime.ListPodSandboxResponse{})

	check("other messages", &runtime.VersionResponse{Version: "0.1.0", RuntimeName: "crishim"}, &runtime.VersionResponse{})
	check("status", &runtime.ContainerStatusResponse{Status: &runtime.ContainerStatus{Id: "c1", State: runtime.ContainerState_CONTAINER_RUNNING}}, &runtime.ContainerStatusResponse{})
}

// TestListCodecForgetsGoneItems: encodings of items no answer uses any more
// are dropped, so the kept set follows the pods and containers that exist.
func TestListCodecForgetsGoneItems(t *testing.T) {
	c := newListCodec()
	live := testContainer("live", runtime.ContainerState_CONTAINER_RUNNING)
	for i := 0; i < 4*listKeepAnswers; i++ {
		gone := testContainer(fmt.Sprintf("gone-%d", i), runtime.ContainerState_CONTAINER_RUNNING)
		if _, err := c.Marshal(&runtime.ListContainersResponse{Containers: []*runtime.Container{live, gone}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.kept(); n > 2*listKeepAnswers+1 {
		t.Fatalf("%d item encodings kept after %d answers with one live container, want at most %d", n, 4*listKeepAnswers, 2*listKeepAnswers+1)
	}
	data, err := c.Marshal(&runtime.ListContainersResponse{Containers: []*runtime.Container{live}})
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, data, &runtime.ListContainersResponse{}); len(got.Containers) != 1 || !proto.Equal(got.Containers[0], live) {
		t.Fatalf("the live container after the sweeps: %v", got)
	}
}

// listServer answers ListContainers with a fixed list, to carry the codec
// over a real gRPC connection.
type listServer struct {
	runtime.UnimplementedRuntimeServiceServer
	resp *runtime.ListContainersResponse
}

func (l *listServer) ListContainers(context.Context, *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	return l.resp, nil
}

// TestListCodecOverGRPC: a gRPC server with the codec sends an answer made
// of many kept buffers that a stock client reads, twice (kept the second
// time).
func TestListCodecOverGRPC(t *testing.T) {
	var items []*runtime.Container
	for i := 0; i < 100; i++ {
		items = append(items, testContainer(fmt.Sprintf("c%03d", i), runtime.ContainerState_CONTAINER_RUNNING))
	}
	want := &runtime.ListContainersResponse{Containers: items}
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(newListCodec()))
	runtime.RegisterRuntimeServiceServer(srv, &listServer{resp: want})
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := runtime.NewRuntimeServiceClient(conn)
	for i := 0; i < 2; i++ {
		got, err := client.ListContainers(context.Background(), &runtime.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("answer %d differs from the list sent", i)
		}
	}
}
