package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// shmSize matches the /dev/shm size container engines traditionally give.
const shmSize = 64 << 20

// Host files a pod inherits when it shares the host's network or gives
// no DNS configuration. Variables so tests can point them elsewhere.
var (
	hostHostsFile  = "/etc/hosts"
	hostResolvFile = "/etc/resolv.conf"
)

// renderResolvConf writes the pod's DNS configuration in resolv.conf syntax.
func renderResolvConf(dns *runtime.DNSConfig) []byte {
	var b bytes.Buffer
	if s := dns.GetSearches(); len(s) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s, " "))
	}
	for _, ns := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if o := dns.GetOptions(); len(o) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(o, " "))
	}
	return b.Bytes()
}

// hasDNS reports whether the pod carries any DNS setting of its own.
func hasDNS(dns *runtime.DNSConfig) bool {
	return len(dns.GetServers())+len(dns.GetSearches())+len(dns.GetOptions()) > 0
}

// renderHosts is the /etc/hosts of a pod with its own network namespace:
// the loopback names, and the pod's hostname on its IP once CNI gave one.
func renderHosts(hostname, ip string) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	if ip != "" && hostname != "" {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	return b.Bytes()
}

// podHostname is the hostname the pod's UTS namespace gets; host-network
// pods share the host's UTS namespace and so its name.
func podHostname(cfg *runtime.PodSandboxConfig) (string, error) {
	if cfg.GetHostname() != "" && !hostNetwork(cfg) {
		return cfg.GetHostname(), nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read host name: %w", err)
	}
	return h, nil
}

// writePodFiles writes hostname, resolv.conf and (before the IP is known)
// hosts into dir.
func writePodFiles(dir string, cfg *runtime.PodSandboxConfig, hostname string) error {
	if err := writeFile(filepath.Join(dir, "hostname"), []byte(hostname+"\n")); err != nil {
		return err
	}
	var resolv []byte
	if hasDNS(cfg.GetDnsConfig()) {
		resolv = renderResolvConf(cfg.GetDnsConfig())
	} else {
		data, err := os.ReadFile(hostResolvFile)
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("read host resolv.conf: %w", err)
		}
		resolv = data
	}
	if err := writeFile(filepath.Join(dir, "resolv.conf"), resolv); err != nil {
		return err
	}
	return writeHosts(dir, cfg, hostname, "")
}

// writeHosts (re)writes the pod's hosts file; host-network pods get a copy
// of the host's.
func writeHosts(dir string, cfg *runtime.PodSandboxConfig, hostname, ip string) error {
	var hosts []byte
	if hostNetwork(cfg) {
		data, err := os.ReadFile(hostHostsFile)
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("read host hosts file: %w", err)
		}
		hosts = data
	} else {
		hosts = renderHosts(hostname, ip)
	}
	return writeFile(filepath.Join(dir, "hosts"), hosts)
}

// writeFile replaces path atomically, so that a container bind-mounting it
// never sees a half-written file.
func writeFile(path string, data []byte) error {
	return writeFileMode(path, data, 0o644)
}

// writeFileMode is writeFile with the file's permissions.
func writeFileMode(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// mountShm mounts the pod's own /dev/shm: a size-limited tmpfs that every
// container of the pod bind-mounts, so they share POSIX shared memory.
func mountShm(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create shm dir %s: %w", path, err)
	}
	opts := fmt.Sprintf("mode=1777,size=%d", shmSize)
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount shm at %s: %w", path, err)
	}
	return nil
}

// unmountShm undoes mountShm; a path that is not (or no longer) mounted is fine.
func unmountShm(path string) error {
	for {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if err == unix.EINVAL || err == unix.ENOENT {
			break
		}
		if err != nil {
			return fmt.Errorf("unmount shm %s: %w", path, err)
		}
		// Loop: the same path may have been mounted more than once.
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove shm dir %s: %w", path, err)
	}
	return nil
}
