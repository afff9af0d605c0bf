//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/cgroup"
)

// What the kubelet sends and critest and crictl never do: these tests make
// the kubelet's requests by hand. The kubelet suites in integration/e2e run
// a real kubelet.

// TestKubeletHugepageLimits: the kubelet sends a hugepage limit for every
// page size the node has, in the create request and in every resources
// update. Where the host has no usable hugetlb controller (these VMs: the
// kernel knows it, no hierarchy is mounted) runc refuses any such spec, so
// the limits must be left out; where it has one, they must be applied.
func TestKubeletHugepageLimits(t *testing.T) {
	c := newClient(t)
	pod := podConfig(t, "hugepages")
	pod.Linux.CgroupParent = "/crishim-it-kubepods/pod" + pod.Metadata.Uid
	t.Cleanup(func() { removeCgroup(t, pod.Linux.CgroupParent) }) // after the pod's removal
	podID := c.runPod(pod)

	hugepages := []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}}
	cfg := containerConfig("app", env.BusyboxImage, idleCmd...)
	cfg.Linux.Resources = &runtime.LinuxContainerResources{
		CpuShares: 2, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 1000, HugepageLimits: hugepages,
	}
	id := c.startContainer(podID, pod, cfg)
	if st := c.containerStatus(id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container is %v with hugepage limits in its config, want RUNNING", st.State)
	}

	usable := cgroup.HugetlbUsable(pod.Linux.CgroupParent)
	checkSpec := func(when string) {
		t.Helper()
		spec := c.runtimeSpec(id)
		got := len(spec.Linux.Resources.HugepageLimits)
		switch {
		case usable && got != len(hugepages):
			t.Errorf("%s: the host has hugetlb, spec carries %d hugepage limits, want %d", when, got, len(hugepages))
		case !usable && got != 0:
			t.Errorf("%s: the host has no usable hugetlb, spec still carries %v", when, spec.Linux.Resources.HugepageLimits)
		}
	}
	checkSpec("create")

	_, err := c.rt.UpdateContainerResources(rpcCtx(t), &runtime.UpdateContainerResourcesRequest{
		ContainerId: id,
		Linux:       &runtime.LinuxContainerResources{CpuShares: 4, MemoryLimitInBytes: 96 << 20, OomScoreAdj: 1000, HugepageLimits: hugepages},
	})
	if err != nil {
		t.Fatalf("UpdateContainerResources with hugepage limits: %v", err)
	}
	checkSpec("update")
	if got := c.containerStatus(id).GetResources().GetLinux().GetMemoryLimitInBytes(); got != 96<<20 {
		t.Errorf("memory limit after the update %d, want %d", got, 96<<20)
	}
	resp := c.execSync(id, 10, "cat", "/proc/self/cgroup")
	if resp.ExitCode != 0 || !strings.Contains(string(resp.Stdout), pod.Linux.CgroupParent) {
		t.Errorf("container not in its pod's cgroup %s: %q", pod.Linux.CgroupParent, resp.Stdout)
	}
}

// TestKubeletImageName: the kubelet creates containers with image.image set
// to the image ID and the pod spec's name in user_specified_image; statuses
// and lists report the name (what `kubectl get pod` shows), not the ID.
func TestKubeletImageName(t *testing.T) {
	c := newClient(t)
	img, err := c.img.ImageStatus(rpcCtx(t), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: env.BusyboxImage}})
	if err != nil || img.GetImage() == nil {
		t.Fatalf("ImageStatus %s: %v (%v)", env.BusyboxImage, img, err)
	}
	imageID := img.Image.Id
	pod := podConfig(t, "imagename")
	podID := c.runPod(pod)

	for _, tc := range []struct {
		name          string
		userSpecified string
		want          func(string) bool
		wantText      string
	}{
		{"kubelet", env.BusyboxImage, func(s string) bool { return s == env.BusyboxImage }, env.BusyboxImage},
		// A name that does not (or no longer) name this image is not reported.
		{"stale", env.PullTestImage, func(s string) bool { return contains(img.Image.RepoTags, s) }, "a tag of the image"},
		{"byid", "", func(s string) bool { return contains(img.Image.RepoTags, s) }, "a tag of the image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t)
			cfg := containerConfig(tc.name, imageID, idleCmd...)
			cfg.Image.UserSpecifiedImage = tc.userSpecified
			cfg.Image.Annotations = map[string]string{"kubernetes.io/runtimehandler": ""}
			id := c.createContainer(podID, pod, cfg)
			st := c.containerStatus(id)
			if !tc.want(st.Image.GetImage()) {
				t.Errorf("ContainerStatus image %q, want %s (tags %v)", st.Image.GetImage(), tc.wantText, img.Image.RepoTags)
			}
			if st.Image.GetUserSpecifiedImage() != tc.userSpecified || st.ImageId != imageID {
				t.Errorf("ContainerStatus user_specified_image %q image_id %q, want %q and %q", st.Image.GetUserSpecifiedImage(), st.ImageId, tc.userSpecified, imageID)
			}
			if strings.HasPrefix(st.ImageRef, "sha256:") && len(img.Image.RepoDigests) > 0 {
				t.Errorf("image_ref %q is the bare ID although the image has repo digests %v", st.ImageRef, img.Image.RepoDigests)
			}
			list, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: id}})
			if err != nil || len(list.Containers) != 1 {
				t.Fatalf("ListContainers %s: %v (%v)", id, list, err)
			}
			if got := list.Containers[0].Image.GetImage(); got != st.Image.GetImage() {
				t.Errorf("ListContainers image %q, ContainerStatus %q: want the same", got, st.Image.GetImage())
			}
		})
	}
}

// removeCgroup removes the empty cgroup dir (and its parents up to the
// hierarchy's root) that runc made for a parent path, in every hierarchy.
func removeCgroup(t *testing.T, dir string) {
	roots := []string{cgroup.Root}
	if !cgroup.V2() {
		roots, _ = filepath.Glob(filepath.Join(cgroup.Root, "*"))
	}
	for _, root := range roots {
		for d := filepath.Clean(dir); d != "/" && d != "."; d = filepath.Dir(d) {
			if err := os.Remove(filepath.Join(root, d)); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove cgroup %s: %v", filepath.Join(root, d), err)
				break
			}
		}
	}
}

// runtimeSpec is the OCI spec crishim reports for a container in its
// verbose status.
func (c *client) runtimeSpec(id string) *specs.Spec {
	t := c.t
	t.Helper()
	resp, err := c.rt.ContainerStatus(rpcCtx(t), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus %s verbose: %v", id, err)
	}
	var info struct {
		RuntimeSpec *specs.Spec `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.RuntimeSpec == nil || info.RuntimeSpec.Linux == nil {
		t.Fatalf("verbose info of %s has no runtime spec: %v", id, err)
	}
	if info.RuntimeSpec.Linux.Resources == nil {
		info.RuntimeSpec.Linux.Resources = &specs.LinuxResources{}
	}
	return info.RuntimeSpec
}
