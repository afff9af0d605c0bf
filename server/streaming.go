package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/crishim/crishim/container"
	"github.com/crishim/crishim/internal/config"
)

// streamService is the HTTP server behind Exec, Attach and PortForward:
// those RPCs only hand out a URL on it; the client then upgrades a request
// to that URL (SPDY or WebSocket) and the session runs here.
//
// URLs carry a token from cri-streaming's request cache: random, single
// use (the first request consumes it) and valid for one minute, so a URL
// that leaked from a log is worthless. The server listens on 127.0.0.1 by
// default: the kubelet on the same node is its only intended client.
//
// A session's context ends when its client's connection does: net/http
// still reads an upgraded connection through its own reader, which cancels
// the request context on a read error (TestStreamSessionEndsWhenClientVanishes
// keeps that true). That is what kills the exec process of a vanished client.
type streamService struct {
	listener net.Listener
	server   streaming.Server
	http     *http.Server
	stopOnce sync.Once
}

// newStreamService binds the streaming address right away, so that the URLs
// handed out carry the real port even when a free one was asked for (0).
func newStreamService(cfg config.Config, rt streaming.Runtime) (*streamService, error) {
	host := cfg.StreamAddress
	if host == "" {
		// An empty host would mean every interface; keep the safe default.
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(cfg.StreamPort))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for streaming on %s: %w", addr, err)
	}
	scfg := streaming.DefaultConfig
	scfg.Addr = l.Addr().String()
	srv, err := streaming.NewServer(scfg, rt)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("create streaming server: %w", err)
	}
	return &streamService{
		listener: l,
		server:   srv,
		http: &http.Server{
			Handler:           srv,
			ReadHeaderTimeout: 30 * time.Second,
		},
	}, nil
}

// Addr is where the streaming server listens.
func (s *streamService) Addr() net.Addr { return s.listener.Addr() }

func (s *streamService) serve() {
	logrus.WithField("address", s.listener.Addr().String()).Info("serving exec, attach and port-forward")
	if err := s.http.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logrus.WithError(err).Error("streaming server stopped")
	}
}

// stop closes the listener and idle connections. Sessions already upgraded
// end with crishim's process.
func (s *streamService) stop() {
	s.stopOnce.Do(func() {
		s.http.Close()
		s.listener.Close()
	})
}

// streamRuntime runs the sessions of the streaming server on the domain
// packages.
type streamRuntime struct{ s *Server }

var _ streaming.Runtime = streamRuntime{}

func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return execError(r.s.containers.Exec(ctx, id, cmd, streams(ctx, in, out, errOut, tty, resize)))
}

// execError turns a command's non-zero exit into the one error type for
// which cri-streaming sends the exit code to the client (kubectl exec
// exits with it, crictl prints it); anything else becomes an internal
// error there.
func execError(err error) error {
	var exit *container.ExitError
	if errors.As(err, &exit) {
		return utilexec.CodeExitError{Err: err, Code: exit.Code}
	}
	return err
}

func (r streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.s.containers.Attach(ctx, id, streams(ctx, in, out, errOut, tty, resize))
}

func (r streamRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	return r.s.sandboxes.PortForward(ctx, podID, port, stream)
}

// streams converts cri-streaming's session ends to the container package's.
// Absent streams stay nil interfaces.
func streams(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) container.Streams {
	s := container.Streams{Stdin: in, Stdout: out, Stderr: errOut, TTY: tty}
	if resize != nil {
		sizes := make(chan container.TerminalSize)
		go func() {
			defer close(sizes)
			for {
				select {
				case size, ok := <-resize:
					if !ok {
						return
					}
					select {
					case sizes <- container.TerminalSize{Width: size.Width, Height: size.Height}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
		s.Resize = sizes
	}
	return s
}

// Exec returns the URL of an interactive exec session in a running container.
func (s *Server) Exec(ctx context.Context, req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, invalid("command is required")
	}
	id, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	req = proto.Clone(req).(*runtime.ExecRequest)
	req.ContainerId = id
	return s.stream.server.GetExec(req)
}

// Attach returns the URL of a session attached to a running container.
func (s *Server) Attach(ctx context.Context, req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	id, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	req = proto.Clone(req).(*runtime.AttachRequest)
	req.ContainerId = id
	return s.stream.server.GetAttach(req)
}

// PortForward returns the URL of a port-forward session into a ready pod.
func (s *Server) PortForward(ctx context.Context, req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, invalid("port %d out of range", p)
		}
	}
	id, err := s.podID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	sb, err := s.sandboxes.Get(id)
	if err != nil {
		return nil, err
	}
	if !sb.Ready {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sb.ID)
	}
	req = proto.Clone(req).(*runtime.PortForwardRequest)
	req.PodSandboxId = sb.ID
	return s.stream.server.GetPortForward(req)
}

// runningContainer resolves id (or a unique prefix) to a running container's ID.
func (s *Server) runningContainer(ctx context.Context, id string) (string, error) {
	id, err := s.containerID(id)
	if err != nil {
		return "", err
	}
	st, _, err := s.containers.Status(ctx, id, false)
	if err != nil {
		return "", err
	}
	if st.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
		return "", status.Errorf(codes.FailedPrecondition, "container %s is %s, not running",
			st.GetId(), st.GetState().String())
	}
	return st.GetId(), nil
}
