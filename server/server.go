// Package server wires crishim's CRI gRPC services to its domain packages:
// it validates requests, calls sandbox, container and image, and maps their
// errors to gRPC status codes in one place (errors.go).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/container"
	"github.com/crishim/crishim/internal/config"
	"github.com/crishim/crishim/internal/events"
	"github.com/crishim/crishim/internal/gomaxprocs"
	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/internal/metrics"
	"github.com/crishim/crishim/internal/network"
	"github.com/crishim/crishim/sandbox"
)

// Server is crishim's CRI runtime service; its image service is imageService.
type Server struct {
	runtime.UnimplementedRuntimeServiceServer

	cfg        config.Config
	client     *containerd.Client
	images     *image.Service
	net        *network.Manager
	sandboxes  *sandbox.Manager
	containers *container.Manager
	grpc       *grpc.Server
	events     *events.Broker
	features   features
	stream     *streamService
	metrics    *metrics.Metrics
	// procs lowers GOMAXPROCS while the calls are only reads (idle.go).
	procs *gomaxprocs.Governor
}

// connectTimeout bounds how long startup waits for containerd to answer.
const connectTimeout = 60 * time.Second

// New connects to containerd, builds the domain managers and recovers the
// state of pods and containers that outlived a previous crishim.
func New(ctx context.Context, cfg config.Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := metrics.New()
	client, err := connect(ctx, cfg, m)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, client: client, metrics: m, procs: gomaxprocs.New(cfg.IdleGOMAXPROCS)}
	if err := s.build(ctx); err != nil {
		client.Close()
		return nil, err
	}
	if err := s.initMetrics(); err != nil {
		client.Close()
		return nil, err
	}
	if s.stream, err = newStreamService(cfg, streamRuntime{s}); err != nil {
		client.Close()
		return nil, err
	}
	s.grpc = grpc.NewServer(
		// The kubelet makes ~1000 small calls a minute on an idle node of
		// 30 pods; a worker per CPU serves them on goroutines whose stacks
		// have already grown, instead of a new goroutine per call.
		grpc.NumStreamWorkers(uint32(goruntime.NumCPU())),
		grpc.ChainUnaryInterceptor(s.metricsUnary, unaryInterceptor),
		grpc.ChainStreamInterceptor(s.metricsStream, streamInterceptor),
		grpc.ForceServerCodecV2(newListCodec(s)),
	)
	runtime.RegisterRuntimeServiceServer(s.grpc, s)
	runtime.RegisterImageServiceServer(s.grpc, &imageService{s: s})
	return s, nil
}

// connect waits for containerd: a node runtime started alongside containerd
// must not fail just because containerd came up a second later.
func connect(ctx context.Context, cfg config.Config, m *metrics.Metrics) (*containerd.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var lastErr error
	for {
		client, err := containerd.New(cfg.ContainerdAddress,
			containerd.WithDefaultNamespace(cfg.ContainerdNamespace),
			containerd.WithDialOpts(containerdDialOpts(m)),
			containerd.WithTimeout(5*time.Second))
		if err == nil {
			serving, serr := client.IsServing(ctx)
			if serr == nil && serving {
				return client, nil
			}
			client.Close()
			err = serr
		}
		lastErr = err
		logrus.WithError(err).WithField("address", cfg.ContainerdAddress).Warn("containerd not answering yet")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.ContainerdAddress, lastErr)
		case <-time.After(time.Second):
		}
	}
}

// containerdDialOpts are the containerd client's own defaults plus an
// interceptor counting requests, so that the round trips behind each CRI
// call can be watched in the metrics.
func containerdDialOpts(m *metrics.Metrics) []grpc.DialOption {
	backoffConfig := backoff.DefaultConfig
	backoffConfig.MaxDelay = 3 * time.Second
	return []grpc.DialOption{
		grpc.WithBlock(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.FailOnNonTempDialError(true),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoffConfig}),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithReturnConnectionError(),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			m.ObserveContainerd(strings.TrimPrefix(method, "/containerd.services."), status.Code(err).String())
			return err
		}),
	}
}

func (s *Server) build(ctx context.Context) error {
	cfg := s.cfg
	driver := cfg.EffectiveCgroupDriver()
	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	s.images = image.New(s.client, image.Config{
		RegistryConfigDir: cfg.RegistryConfigDir,
		Snapshotter:       cfg.Snapshotter,
		Root:              cfg.Root,
		ObservePull:       s.metrics.ObservePull,
	})
	nm, err := network.New(network.Config{
		ConfDir:  cfg.CNIConfDir,
		BinDirs:  cfg.CNIBinDirs(),
		NetNSDir: filepath.Join(cfg.State, "netns"),
		Observe:  s.metrics.ObserveCNI,
	})
	if err != nil {
		return fmt.Errorf("set up pod networking: %w", err)
	}
	s.net = nm
	s.sandboxes = sandbox.New(s.client, s.images, s.net, sandbox.Config{
		Root:         cfg.Root,
		State:        cfg.State,
		SandboxImage: cfg.SandboxImage,
		CgroupDriver: driver,
		Snapshotter:  cfg.Snapshotter,
		Runtime:      cfg.Runtime,
	})
	s.containers = container.New(s.client, s.images, s.sandboxes, container.Config{
		Root:         cfg.Root,
		State:        cfg.State,
		CgroupDriver: driver,
		Snapshotter:  cfg.Snapshotter,
		Runtime:      cfg.Runtime,

		ObserveLogDrop: s.metrics.ObserveLogDrop,
	})
	s.wireEvents()
	s.features = detectFeatures()
	// Sandboxes first: containers resolve their pod while recovering.
	if err := s.sandboxes.Recover(ctx); err != nil {
		return fmt.Errorf("recover pod sandboxes: %w", err)
	}
	if err := s.containers.Recover(ctx); err != nil {
		return fmt.Errorf("recover containers: %w", err)
	}
	return nil
}

// Serve listens on the configured unix socket and serves until ctx is done,
// then stops gracefully. Pods keep running: they belong to containerd.
func (s *Server) Serve(ctx context.Context) error {
	l, err := Listen(s.cfg.SocketPath())
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, l)
}

// ServeListener serves on l (for socket activation and tests).
func (s *Server) ServeListener(ctx context.Context, l net.Listener) error {
	stopHTTP, err := s.startHTTP()
	if err != nil {
		l.Close()
		return err
	}
	defer stopHTTP()
	errc := make(chan error, 1)
	go s.stream.serve()
	defer s.stream.stop()
	procsCtx, stopProcs := context.WithCancel(ctx)
	defer stopProcs()
	go s.procs.Run(procsCtx)
	go func() { errc <- s.grpc.Serve(l) }()
	logrus.WithField("address", l.Addr().String()).Info("serving CRI")
	// The socket is listening, so the kubelet's first call queues up
	// rather than failing: ready now.
	notifySystemd("READY=1")
	select {
	case err := <-errc:
		return fmt.Errorf("serve CRI on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	notifySystemd("STOPPING=1")
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	// Event streams never end on their own: ended here, with a status that
	// tells the kubelet to relist, they let the graceful stop finish as soon
	// as the calls in flight have.
	s.events.Close()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		logrus.Warn("calls still in flight 5 s after the shutdown began: closing them")
		s.grpc.Stop()
	}
	return nil
}

// Close releases the containerd connection and the streaming port.
func (s *Server) Close() error {
	if s.stream != nil {
		s.stream.stop()
	}
	if s.containers != nil {
		s.containers.Close()
	}
	if s.sandboxes != nil {
		s.sandboxes.Close()
	}
	if s.images != nil {
		s.images.Close()
	}
	return s.client.Close()
}

// Listen creates the CRI unix socket, replacing a stale one, readable and
// writable by root and its group only.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create socket directory for %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("set mode of %s: %w", path, err)
	}
	return l, nil
}
