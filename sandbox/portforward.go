package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
)

// portForwardDialTimeout bounds the connect to the pod's port.
const portForwardDialTimeout = 10 * time.Second

// PortForward connects stream to port on the pod's loopback, from inside the
// pod's network namespace (the host's for host-network pods), and copies
// both ways until the pod's side closes, the stream fails or ctx ends. The
// client closing its side half-closes the connection, so a request still
// gets its answer.
func (m *Manager) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port %d out of range: %w", port, errdefs.ErrInvalidArgument)
	}
	sb, err := m.Get(id)
	if err != nil {
		return err
	}
	if !sb.Ready {
		return fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	conn, err := dialLoopback(sb.NetNSPath, int(port))
	if err != nil {
		return fmt.Errorf("port forward to port %d of pod %s: %w", port, sb.ID, err)
	}
	defer conn.Close()
	log := m.logger(sb.ID).WithField("port", port)
	log.Debug("port forward connected")
	err = splice(ctx, conn, stream)
	log.WithError(err).Debug("port forward ended")
	return nil
}

// dialLoopback connects to port on 127.0.0.1 (then ::1) of the network
// namespace at nsPath; "" is the host's. The socket is created inside the
// namespace and stays there: it can be used from any thread afterwards.
func dialLoopback(nsPath string, port int) (net.Conn, error) {
	dial := func() (net.Conn, error) {
		d := net.Dialer{Timeout: portForwardDialTimeout}
		var errs []error
		for _, host := range []string{"127.0.0.1", "::1"} {
			conn, err := d.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	if nsPath == "" {
		return dial()
	}
	var conn net.Conn
	err := netns.LoadNetNS(nsPath).Do(func(cnins.NetNS) error {
		var err error
		conn, err = dial()
		return err
	})
	return conn, err
}

// splice copies between conn and stream. It returns when conn has nothing
// more to send (the copy to stream ended), when ctx ends, or when the
// stream fails; the stream's clean end only half-closes conn.
func splice(ctx context.Context, conn net.Conn, stream io.ReadWriteCloser) error {
	upErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				if cerr := tc.CloseWrite(); cerr == nil {
					upErr <- nil
					return
				}
			}
		}
		// The client is gone, or conn cannot half-close: stop both ways.
		// The cause goes out first, so that it is what splice reports.
		upErr <- err
		conn.Close()
	}()
	downErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		downErr <- err
	}()
	for {
		select {
		case err := <-downErr:
			select {
			case uerr := <-upErr:
				if uerr != nil {
					return uerr
				}
			default:
			}
			return err
		case err := <-upErr:
			if err != nil {
				return err
			}
			upErr = nil // half-closed: wait for the pod's answer to end
		case <-ctx.Done():
			conn.Close()
			return ctx.Err()
		}
	}
}
