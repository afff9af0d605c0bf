//go:build linux

package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// line100 is a 100-byte line (with its newline) for the output bursts.
const line100 = "012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678"

// mountTmpfs mounts a tmpfs of the given size (mount's size= syntax) on
// dir and unmounts it when the test ends, after everything the test
// registered later (its pods and containers) was cleaned up.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		// crishim closes a container's log file once its output is drained
		// after the exit; until then the mount is busy.
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := syscall.Unmount(dir, 0)
			if err == nil {
				return
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				t.Errorf("unmount the tmpfs on %s: %v (detaching it)", dir, err)
				_ = syscall.Unmount(dir, syscall.MNT_DETACH)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// waitFile polls until path exists in the container (ExecSync runs apart
// from the container's main process and its output pipes).
func (c *client) waitFile(ctrID, path string, timeout time.Duration) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if c.execSync(ctrID, 10, "test", "-e", path).ExitCode == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear in container %s within %s: its main process is stuck", path, ctrID, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCrishimLog polls crishim's log for a line that has every one of parts.
func waitCrishimLog(t *testing.T, timeout time.Duration, parts ...string) string {
	t.Helper()
	crishim, err := env.Crishim()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(crishim.LogPath())
		if err != nil {
			t.Fatal(err)
		}
	lines:
		for _, line := range strings.Split(string(data), "\n") {
			for _, p := range parts {
				if !strings.Contains(line, p) {
					continue lines
				}
			}
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("crishim's log has no line with all of %q after %s", parts, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLogFilesystemFull fills the filesystem of a pod's log directory with
// the container's own output. The container must not notice: its writes
// go on (what cannot be written is dropped and crishim warns), and the log
// resumes once there is space again, whether the space is freed by
// truncating the log or by the kubelet's rotation (rename, reopen, delete).
func TestLogFilesystemFull(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "logfull")
	mountTmpfs(t, pod.LogDirectory, "256k")
	podID := c.runPod(pod)
	// Each burst is ~1.3 MB of output, five times the filesystem.
	cfg := containerConfig("chatty", env.BusyboxImage, "sh", "-c", `trap "exit 0" TERM
burst() { yes `+line100+` | head -c 1300000; }
burst; touch /done1
i=0
while true; do
  if [ -e /burst ]; then rm /burst; burst; touch /done2; fi
  echo tick-$i; i=$((i+1)); sleep 0.1
done`)
	ctrID := c.startContainer(podID, pod, cfg)
	path := filepath.Join(pod.LogDirectory, cfg.LogPath)
	hasTick := func(l map[string][]string) bool {
		for _, line := range l["stdout"] {
			if strings.HasPrefix(line, "tick-") {
				return true
			}
		}
		return false
	}

	c.waitFile(ctrID, "/done1", time.Minute)
	waitCrishimLog(t, 10*time.Second, ctrID, "level=warning", "no space left on device")
	// What did fit is whole entries. The file may end in the piece of an
	// entry whose write is failing right now (it is cut off again once
	// the write has failed); everything before is whole.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if recs := parseCRILog(t, data[:bytes.LastIndexByte(data, '\n')+1]); len(recs) == 0 {
		t.Fatalf("nothing was logged before the filesystem filled up")
	}

	// Truncating the log frees the space: the next lines land in it.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	waitLog(t, path, 30*time.Second, hasTick)

	// Fill it again, then rotate the way the kubelet does: the rotated
	// file's space comes back only once crishim has let go of it.
	c.execSync(ctrID, 10, "touch", "/burst")
	c.waitFile(ctrID, "/done2", time.Minute)
	var fsStat syscall.Statfs_t
	if err := syscall.Statfs(pod.LogDirectory, &fsStat); err != nil {
		t.Fatal(err)
	}
	if fsStat.Bavail != 0 {
		t.Fatalf("the log filesystem has %d blocks free after the second burst, want it full", fsStat.Bavail)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rt.ReopenContainerLog(rpcCtx(t), &runtime.ReopenContainerLogRequest{ContainerId: ctrID}); err != nil {
		t.Fatalf("ReopenContainerLog on a full filesystem: %v", err)
	}
	if err := os.Remove(path + ".1"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, path, 30*time.Second, hasTick)
	if st := c.containerStatus(ctrID); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container is %v, want RUNNING", st.State)
	}
}
