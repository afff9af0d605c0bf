package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// features is what crishim can do on this host, found once at startup.
type features struct {
	// RecursiveReadOnly: runc knows the "rro" mount option and the kernel
	// has mount_setattr (5.12).
	RecursiveReadOnly bool `json:"recursiveReadOnlyMounts"`
	// UserNamespaces stays false: Kubernetes user namespaces need idmapped
	// mounts of the rootfs and volumes, which runc 1.1 cannot set up.
	UserNamespaces           bool   `json:"userNamespaces"`
	SupplementalGroupsPolicy bool   `json:"supplementalGroupsPolicy"`
	Runc                     string `json:"runcVersion,omitempty"`
	Kernel                   string `json:"kernel,omitempty"`
}

func detectFeatures() features {
	f := features{SupplementalGroupsPolicy: true}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		f.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "runc", "features").Output()
	if err != nil {
		logrus.WithError(err).Warn("`runc features` failed; recursive read-only mounts not advertised")
		return f
	}
	rro, version := runcFeatures(out)
	f.Runc = version
	f.RecursiveReadOnly = rro && kernelAtLeast(f.Kernel, 5, 12)
	return f
}

// runcFeatures reads `runc features` output: whether the "rro" mount
// option is known, and runc's version.
func runcFeatures(out []byte) (rro bool, version string) {
	var doc struct {
		MountOptions []string          `json:"mountOptions"`
		Annotations  map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return false, ""
	}
	for _, o := range doc.MountOptions {
		rro = rro || o == "rro"
	}
	return rro, doc.Annotations["org.opencontainers.runc.version"]
}

// kernelAtLeast compares a release string such as "6.1.0-18-amd64".
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	minStr := parts[1]
	if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minStr = minStr[:i]
	}
	mn, err2 := strconv.Atoi(minStr)
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || (maj == major && mn >= minor)
}

func (f features) handler() *runtime.RuntimeHandlerFeatures {
	return &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: f.RecursiveReadOnly, UserNamespaces: f.UserNamespaces}
}

func (f features) runtime() *runtime.RuntimeFeatures {
	return &runtime.RuntimeFeatures{SupplementalGroupsPolicy: f.SupplementalGroupsPolicy}
}

// statusInfo is the verbose Status detail: the effective configuration,
// the CNI state (with the pod CIDR UpdateRuntimeConfig recorded) and
// what this host supports.
func (s *Server) statusInfo() (map[string]string, error) {
	info := map[string]string{}
	for key, v := range map[string]any{"config": s.cfg, "cniconfig": s.net.Info(), "features": s.features} {
		data, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s for status: %w", key, err)
		}
		info[key] = string(data)
	}
	return info, nil
}
