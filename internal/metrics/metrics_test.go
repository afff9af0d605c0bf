package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("scrape: HTTP %d: %s", rec.Code, body)
	}
	return string(body)
}

func TestObservationsAppearInScrape(t *testing.T) {
	m := New()
	m.ObserveRPC("RunPodSandbox", "OK", 300*time.Millisecond)
	m.ObserveRPC("RunPodSandbox", "NotFound", time.Millisecond)
	m.ObserveRPC("RunPodSandbox", "OK", time.Second)
	m.ObserveCNI("setup", 50*time.Millisecond, nil)
	m.ObserveCNI("teardown", 10*time.Millisecond, errors.New("boom"))
	m.ObservePull(1234, 2*time.Second, nil)
	m.ObservePull(0, time.Second, errors.New("unauthorized"))
	m.ObserveStop(true)
	m.ObserveLogDrop(100)
	m.ObserveLogDrop(50)
	if err := m.CountUnknownSandboxes(func() int { return 2 }); err != nil {
		t.Fatal(err)
	}

	body := scrape(t, m)
	for _, want := range []string{
		`crishim_grpc_requests_total{code="NotFound",rpc="RunPodSandbox"} 1`,
		`crishim_grpc_requests_total{code="OK",rpc="RunPodSandbox"} 2`,
		`crishim_image_pull_bytes_total 1234`,
		`crishim_grpc_request_duration_seconds_count{rpc="RunPodSandbox"} 3`,
		`crishim_grpc_request_duration_seconds_bucket{rpc="RunPodSandbox",le="0.5"} 2`,
		`crishim_cni_operation_duration_seconds_count{operation="teardown",result="error"} 1`,
		`crishim_image_pull_duration_seconds_count{result="error"} 1`,
		`crishim_container_stops_total{outcome="killed"} 1`,
		`crishim_container_stops_total{outcome="graceful"} 0`,
		`crishim_container_log_dropped_bytes_total 150`,
		`crishim_container_log_dropped_lines_total 2`,
		`crishim_sandbox_unknown 2`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestStateGaugeReportsEveryStateAndErrors(t *testing.T) {
	m := New()
	var fail error
	err := m.RegisterStateGauge("pods", "pods by state", []string{"ready", "notready"}, func(ctx context.Context) (map[string]int, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("count called without a deadline")
		}
		return map[string]int{"ready": 2, "odd": 1}, fail
	})
	if err != nil {
		t.Fatal(err)
	}
	body := scrape(t, m)
	for _, want := range []string{`crishim_pods{state="ready"} 2`, `crishim_pods{state="notready"} 0`, `crishim_pods{state="odd"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	// A failing List must not take the rest of the metrics down with it.
	fail = errors.New("containerd gone")
	body = scrape(t, m)
	if strings.Contains(body, "crishim_pods{") || !strings.Contains(body, "crishim_container_stops_total") {
		t.Errorf("with a failing count: want pods absent and the rest present:\n%s", body)
	}
}
