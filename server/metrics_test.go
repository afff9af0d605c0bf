package server

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/metrics"
)

func TestMetricsInterceptorCountsFinalCodes(t *testing.T) {
	s := &Server{metrics: metrics.New()}
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/StopContainer"}
	// In the server's chain the metrics interceptor wraps the one that
	// maps domain errors; chain them the same way here.
	chained := func(ctx context.Context, req any, handler grpc.UnaryHandler) (any, error) {
		return s.metricsUnary(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return unaryInterceptor(ctx, req, info, handler)
		})
	}
	ok := func(context.Context, any) (any, error) { return &runtime.StopContainerResponse{}, nil }
	missing := func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "no such container") }
	boom := func(context.Context, any) (any, error) { panic("bug") }
	for _, h := range []grpc.UnaryHandler{ok, ok, missing, boom} {
		_, _ = chained(context.Background(), &runtime.StopContainerRequest{ContainerId: "c1"}, h)
	}
	rec := httptest.NewRecorder()
	s.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`crishim_grpc_requests_total{code="OK",rpc="StopContainer"} 2`,
		`crishim_grpc_requests_total{code="NotFound",rpc="StopContainer"} 1`,
		`crishim_grpc_requests_total{code="Internal",rpc="StopContainer"} 1`,
		`crishim_grpc_request_duration_seconds_count{rpc="StopContainer"} 4`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestIDFields(t *testing.T) {
	f := idFields(&runtime.CreateContainerRequest{PodSandboxId: "p1"}, &runtime.CreateContainerResponse{ContainerId: "c1"})
	if f["pod"] != "p1" || f["container"] != "c1" {
		t.Errorf("CreateContainer fields = %v", f)
	}
	var nilResp *runtime.RunPodSandboxResponse
	f = idFields(&runtime.RunPodSandboxRequest{}, nilResp)
	if len(f) != 0 {
		t.Errorf("failed RunPodSandbox fields = %v, want none", f)
	}
	if f := idFields(&runtime.VersionRequest{}, nil); len(f) != 0 {
		t.Errorf("Version fields = %v", f)
	}
}

func TestStateLabel(t *testing.T) {
	if got := stateLabel(runtime.PodSandboxState_SANDBOX_NOTREADY.String(), "SANDBOX_"); got != "notready" {
		t.Errorf("stateLabel = %q", got)
	}
	if got := stateLabel(runtime.ContainerState_CONTAINER_EXITED.String(), "CONTAINER_"); got != "exited" {
		t.Errorf("stateLabel = %q", got)
	}
}
