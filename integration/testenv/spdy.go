//go:build linux

package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// SPDYDial upgrades a POST to rawURL to a SPDY connection with protocol,
// as kubectl and crictl do for exec, attach and port-forward. raw is the
// TCP connection under it, for cutting it off abruptly the way a client
// that dies does (closing conn waits for the streams to finish). The
// connection fails after a minute, so a hung session fails its test
// rather than the whole run.
func SPDYDial(rawURL, protocol string) (conn httpstream.Connection, raw net.Conn, err error) {
	var mu sync.Mutex
	rt, err := spdy.NewRoundTripperWithConfig(spdy.RoundTripperConfig{
		UpgradeTransport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			mu.Lock()
			raw = c
			mu.Unlock()
			return c, err
		}},
	})
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, rawURL, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if conn, err = rt.NewConnection(resp); err != nil {
		raw.Close()
		return nil, nil, err
	}
	if got := resp.Header.Get(httpstream.HeaderProtocolVersion); got != protocol {
		raw.Close()
		return nil, nil, fmt.Errorf("server chose protocol %q, want %q", got, protocol)
	}
	raw.SetDeadline(time.Now().Add(time.Minute)) //nolint:errcheck
	return conn, raw, nil
}
