package server

import (
	"fmt"
	"net"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
)

// ActivatedListener returns the socket systemd passed to crishim
// (crishim.socket), or nil when crishim was not socket-activated.
func ActivatedListener() (net.Listener, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	var found []net.Listener
	for _, l := range ls {
		if l != nil {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	default:
		for _, l := range found {
			l.Close()
		}
		return nil, fmt.Errorf("socket activation: got %d sockets, want the CRI socket only", len(found))
	}
}

// notifySystemd tells systemd about crishim's state (Type=notify); a
// no-op when not run by systemd.
func notifySystemd(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		logrus.WithError(err).WithField("state", state).Warn("sd_notify")
	}
}
