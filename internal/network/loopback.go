package network

import (
	"fmt"

	"github.com/containerd/containerd/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// bringUpLoopback sets lo up in the network namespace at path. crishim does
// this itself instead of running the loopback CNI plugin: one ioctl instead
// of a plugin exec on every ADD and every DEL, and lo needs no DEL since it
// goes away with its namespace.
func bringUpLoopback(path string) error {
	err := netns.LoadNetNS(path).Do(func(cnins.NetNS) error {
		// Interface flags can be set through any socket; a unix one works
		// whichever IP families the kernel has.
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("read flags of lo: %w", err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bring up loopback in %s: %w", path, err)
	}
	return nil
}
