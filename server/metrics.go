package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/crishim/crishim/internal/config"
	"github.com/crishim/crishim/internal/metrics"
	"github.com/crishim/crishim/lifecycle"
)

// metricsUnary is the outermost interceptor, so it sees the final gRPC
// code (after error mapping and panic recovery) and the whole latency.
func (s *Server) metricsUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	rpc := rpcName(info.FullMethod)
	if !idleReads[rpc] {
		s.procs.Kick()
	}
	resp, err := handler(ctx, req)
	s.metrics.ObserveRPC(rpc, status.Code(err).String(), time.Since(start))
	return resp, err
}

func (s *Server) metricsStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	s.metrics.ObserveRPC(rpcName(info.FullMethod), status.Code(err).String(), time.Since(start))
	return err
}

// initMetrics connects the metrics that are not fed by the interceptors
// or the domain packages' Config hooks. Pods and containers by state are
// counted from the managers at scrape time so they never drift from List.
func (s *Server) initMetrics() error {
	lifecycle.ObserveStops(func(_ string, killed bool) { s.metrics.ObserveStop(killed) })
	if err := s.metrics.CountUnknownSandboxes(s.sandboxes.Unknown); err != nil {
		return err
	}
	err := s.metrics.RegisterStateGauge("pods", "Pod sandboxes by state.", []string{"ready", "notready"},
		func(ctx context.Context) (map[string]int, error) {
			pods, err := s.sandboxes.List(ctx, nil)
			if err != nil {
				return nil, err
			}
			counts := map[string]int{}
			for _, p := range pods {
				counts[stateLabel(p.State.String(), "SANDBOX_")]++
			}
			return counts, nil
		})
	if err != nil {
		return err
	}
	return s.metrics.RegisterStateGauge("containers", "Containers by state.", []string{"created", "running", "exited", "unknown"},
		func(ctx context.Context) (map[string]int, error) {
			ctrs, err := s.containers.List(ctx, nil)
			if err != nil {
				return nil, err
			}
			counts := map[string]int{}
			for _, c := range ctrs {
				counts[stateLabel(c.State.String(), "CONTAINER_")]++
			}
			return counts, nil
		})
}

// stateLabel turns "SANDBOX_NOTREADY" into "notready".
func stateLabel(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

// startHTTP starts the metrics and pprof endpoints that are configured and
// returns a function that shuts them down. Failing to listen is fatal: an
// operator who asked for metrics must not find them silently missing.
func (s *Server) startHTTP() (stop func(), err error) {
	var servers []*http.Server
	stop = func() {
		for _, srv := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
		}
	}
	serve := func(what, addr string, h http.Handler) error {
		addr, err := config.HTTPAddress(addr)
		if err != nil || addr == "" {
			return err
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen for %s on %s: %w", what, addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logrus.WithError(err).WithField("address", l.Addr().String()).Errorf("%s server stopped", what)
			}
		}()
		logrus.WithField("address", l.Addr().String()).Infof("serving %s", what)
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.Handler())
	if err := serve("metrics", s.cfg.MetricsAddress, mux); err != nil {
		stop()
		return nil, err
	}
	if err := serve("pprof", s.cfg.DebugAddress, pprofMux()); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Metrics is the server's metrics set (for tests).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }
