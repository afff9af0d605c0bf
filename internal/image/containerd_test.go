package image

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/opencontainers/image-spec/identity"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// These tests drive a real containerd and registry of their own
// (testenv.Shared, set up by the first of them): the image is the
// registry's pull-test busybox, reached through a hosts.toml mirror
// entry as a node would.

// stack is the package's private containerd and registry.
var stack testenv.Shared

func TestMain(m *testing.M) { os.Exit(stack.Main(m)) }

const ns = "crishim-image-test"

func realService(t *testing.T) (*Service, context.Context) {
	t.Helper()
	e := stack.Env(t)
	client, err := containerd.New(e.Containerd.Address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatalf("connect to containerd: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	svc := New(client, Config{
		RegistryConfigDir: e.RegistryConfigDir,
		Snapshotter:       "overlayfs",
	})
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 5*time.Minute)
	t.Cleanup(cancel)
	return svc, ctx
}

func TestContainerdPullListStatusRemove(t *testing.T) {
	svc, ctx := realService(t)
	testImage := stack.Env(t).PullTestImage
	repo, _, _ := strings.Cut(testImage, ":")
	spec := &runtime.ImageSpec{Image: testImage}
	t.Cleanup(func() { _ = svc.Remove(context.WithoutCancel(ctx), spec) })

	id, err := svc.Pull(ctx, testImage, nil, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if _, ok := parseID(id); !ok || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("Pull returned %q, want a sha256 image ID", id)
	}

	imgs, err := svc.List(ctx, nil)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var listed *runtime.Image
	for _, img := range imgs {
		if img.Id == id {
			if listed != nil {
				t.Fatalf("List reports image %s twice", id)
			}
			listed = img
		}
	}
	if listed == nil {
		t.Fatalf("List does not report %s: %v", id, imgs)
	}
	if !slices.Contains(listed.RepoTags, testImage) {
		t.Errorf("repo tags %v lack %s", listed.RepoTags, testImage)
	}
	if len(listed.RepoDigests) != 1 || !strings.HasPrefix(listed.RepoDigests[0], repo+"@sha256:") {
		t.Fatalf("repo digests %v, want one %s@sha256:...", listed.RepoDigests, repo)
	}
	if id != stack.Env(t).PullTestID {
		t.Errorf("Pull returned %s, want the pushed image's ID %s", id, stack.Env(t).PullTestID)
	}
	if listed.Size == 0 {
		t.Error("image size is 0")
	}
	repoDigest := listed.RepoDigests[0]

	filtered, err := svc.List(ctx, &runtime.ImageFilter{Image: &runtime.ImageSpec{Image: repoDigest}})
	if err != nil || len(filtered) != 1 || filtered[0].Id != id {
		t.Errorf("List filtered by %s = %v, %v; want just %s", repoDigest, filtered, err, id)
	}

	for _, ref := range []string{testImage, id, repoDigest} {
		img, info, err := svc.Status(ctx, &runtime.ImageSpec{Image: ref}, true)
		if err != nil || img == nil {
			t.Fatalf("Status(%s) = %v, %v", ref, img, err)
		}
		if img.Id != id {
			t.Errorf("Status(%s).Id = %s, want %s", ref, img.Id, id)
		}
		var v struct {
			ImageSpec struct {
				Config struct{ Cmd []string } `json:"config"`
			} `json:"imageSpec"`
		}
		if err := json.Unmarshal([]byte(info["info"]), &v); err != nil || len(v.ImageSpec.Config.Cmd) == 0 {
			t.Errorf("Status(%s) verbose info %q: %v", ref, info["info"], err)
		}
	}

	local, err := svc.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if local.ID != id || local.Ref != repoDigest {
		t.Errorf("Get(ID) = {ID %s Ref %s}, want {%s %s}", local.ID, local.Ref, id, repoDigest)
	}
	if len(local.Config.Cmd) == 0 {
		t.Errorf("Get: image config has no Cmd: %+v", local.Config)
	}
	if ok, err := local.Image.IsUnpacked(ctx, "overlayfs"); err != nil || !ok {
		t.Errorf("image not unpacked after pull: %v %v", ok, err)
	}

	byDigest, err := svc.Pull(ctx, repoDigest, nil, nil)
	if err != nil || byDigest != id {
		t.Fatalf("Pull(%s) = %s, %v; want %s", repoDigest, byDigest, err, id)
	}

	fs, err := svc.FsInfo(ctx)
	if err != nil {
		t.Fatalf("FsInfo: %v", err)
	}
	if len(fs) != 1 || !strings.HasSuffix(fs[0].FsId.GetMountpoint(), "io.containerd.snapshotter.v1.overlayfs") ||
		fs[0].UsedBytes.GetValue() == 0 || fs[0].InodesUsed.GetValue() == 0 {
		t.Errorf("FsInfo = %v", fs)
	}

	if err := svc.Remove(ctx, spec); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, ref := range []string{testImage, id, repoDigest} {
		if img, _, err := svc.Status(ctx, &runtime.ImageSpec{Image: ref}, false); err != nil || img != nil {
			t.Errorf("Status(%s) after Remove = %v, %v; want nil, nil", ref, img, err)
		}
	}
	if _, err := svc.Get(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Remove: %v, want NotFound", err)
	}
	if err := svc.Remove(ctx, spec); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestContainerdPullMissingImage(t *testing.T) {
	svc, ctx := realService(t)
	// By the registry's own address: through the alias, containerd tries
	// the alias's (made-up) upstream after the mirror's 404.
	_, err := svc.Pull(ctx, stack.Env(t).Registry.Host+"/no-such-image:0", nil, nil)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("pulling an image that does not exist: %v, want not found", err)
	}
}

func TestContainerdEmbeddedPause(t *testing.T) {
	svc, ctx := realService(t)
	name, err := EmbeddedPauseRef()
	if err != nil {
		// `make test` builds the pause program before the tests.
		t.Fatalf("no embedded pause image (run `make pause` before go test): %v", err)
	}
	local, err := svc.EnsureSandboxImage(ctx, "")
	if err != nil {
		t.Fatalf("EnsureSandboxImage: %v", err)
	}
	t.Cleanup(func() { _ = svc.Remove(context.WithoutCancel(ctx), &runtime.ImageSpec{Image: local.ID}) })
	if local.Image.Name() != name {
		t.Errorf("pause image is named %s, want %s", local.Image.Name(), name)
	}
	if !slices.Equal(local.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("pause entrypoint %v", local.Config.Entrypoint)
	}
	img, _, err := svc.Status(ctx, &runtime.ImageSpec{Image: local.ID}, false)
	if err != nil || img == nil || !img.Pinned || !slices.Contains(img.RepoTags, name) {
		t.Errorf("Status(pause) = %v, %v; want pinned with tag %s", img, err, name)
	}

	// A fresh service (a restarted crishim) finds the same image.
	again, err := New(svc.client, svc.cfg).EnsureSandboxImage(ctx, "")
	if err != nil || again.ID != local.ID {
		t.Errorf("second EnsureSandboxImage = %v, %v; want ID %s", again, err, local.ID)
	}

	// The unpacked snapshot holds an executable /pause.
	diffIDs, err := local.Image.RootFS(ctx)
	if err != nil {
		t.Fatalf("RootFS: %v", err)
	}
	sn := svc.client.SnapshotService("overlayfs")
	key := "crishim-image-test-view-" + strings.TrimPrefix(local.ID, "sha256:")[:12]
	mounts, err := sn.View(ctx, key, identity.ChainID(diffIDs).String())
	if err != nil {
		t.Fatalf("view pause snapshot: %v", err)
	}
	t.Cleanup(func() { _ = sn.Remove(context.WithoutCancel(ctx), key) })
	dir := t.TempDir()
	if err := mount.All(mounts, dir); err != nil {
		t.Fatalf("mount pause snapshot: %v", err)
	}
	t.Cleanup(func() { _ = mount.UnmountAll(dir, 0) })
	fi, err := os.Stat(filepath.Join(dir, "pause"))
	if err != nil {
		t.Fatalf("pause snapshot: %v", err)
	}
	if fi.Mode().Perm() != 0o755 || fi.Size() == 0 {
		t.Errorf("/pause in the snapshot: mode %v size %d", fi.Mode(), fi.Size())
	}
}

func TestContainerdConfiguredSandboxImage(t *testing.T) {
	svc, ctx := realService(t)
	e := stack.Env(t)
	if err := e.PushPauseImage(); err != nil {
		t.Fatal(err)
	}
	ref := e.PauseImage
	repo, _, _ := strings.Cut(ref, "/crishim/pause:")
	repo += "/crishim/pause"
	t.Cleanup(func() { _ = svc.Remove(context.WithoutCancel(ctx), &runtime.ImageSpec{Image: ref}) })
	_ = svc.Remove(ctx, &runtime.ImageSpec{Image: ref})

	local, err := svc.EnsureSandboxImage(ctx, ref)
	if err != nil {
		t.Fatalf("EnsureSandboxImage(%s): %v", ref, err)
	}
	if local.ID != e.PauseImageID {
		t.Errorf("sandbox image ID %s, want the pushed image's %s", local.ID, e.PauseImageID)
	}
	if !strings.HasPrefix(local.Ref, repo+"@sha256:") {
		t.Errorf("sandbox image ref %s, want a repo digest", local.Ref)
	}
	img, _, err := svc.Status(ctx, &runtime.ImageSpec{Image: ref}, false)
	if err != nil || img == nil || !img.Pinned || img.Id != local.ID {
		t.Fatalf("Status(%s) = %v, %v; want pinned %s", ref, img, err, local.ID)
	}
	// Pulling it again (a kubelet might) keeps the pin.
	if _, err := svc.Pull(ctx, ref, nil, nil); err != nil {
		t.Fatalf("Pull(%s): %v", ref, err)
	}
	if img, _, err := svc.Status(ctx, &runtime.ImageSpec{Image: ref}, false); err != nil || img == nil || !img.Pinned {
		t.Errorf("after a re-pull Status(%s) = %v, %v; want pinned", ref, img, err)
	}
}

func TestContainerdConcurrentPulls(t *testing.T) {
	svc, ctx := realService(t)
	testImage := stack.Env(t).PullTestImage
	spec := &runtime.ImageSpec{Image: testImage}
	t.Cleanup(func() { _ = svc.Remove(context.WithoutCancel(ctx), spec) })

	const n = 4
	ids := make(chan string, n)
	errs := make(chan error, 2*n)
	for range n {
		go func() {
			id, err := svc.Pull(ctx, testImage, nil, nil)
			errs <- err
			ids <- id
		}()
		go func() {
			_, err := svc.List(ctx, nil)
			errs <- err
		}()
	}
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent pull/list: %v", err)
		}
	}
	first := <-ids
	for range n - 1 {
		if id := <-ids; id != first {
			t.Errorf("concurrent pulls returned IDs %s and %s", first, id)
		}
	}
}

// TestContainerdLayerUsage checks what ImageFsInfo and container stats
// see of a writable layer: a fresh walk when no older measurement may
// do, ImageFsInfo counting what the last one found, a removed layer gone
// at once, and a sealed (read-only root) layer measured once more after
// its seal and then kept.
func TestContainerdLayerUsage(t *testing.T) {
	svc, ctx := realService(t)
	sn := svc.client.SnapshotService(svc.cfg.Snapshotter)
	key := "layer-usage-" + strings.ReplaceAll(t.Name(), "/", "-")
	mounts, err := sn.Prepare(ctx, key, "")
	if err != nil {
		t.Fatalf("prepare snapshot: %v", err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			_ = sn.Remove(context.WithoutCancel(ctx), key)
		}
	})
	dir := upperDir(mounts)
	if dir == "" {
		t.Fatalf("no upper directory in %+v", mounts)
	}
	write := func(name string, size int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fsTotal := func() uint64 {
		t.Helper()
		fs, err := svc.FsInfo(ctx)
		if err != nil {
			t.Fatalf("FsInfo: %v", err)
		}
		return fs[0].GetUsedBytes().GetValue()
	}
	const mib = 1 << 20

	before, err := svc.RecentUsage(ctx, key, 0)
	if err != nil {
		t.Fatalf("RecentUsage: %v", err)
	}
	total := fsTotal()
	write("a", mib)
	after, err := svc.RecentUsage(ctx, key, 0)
	if err != nil {
		t.Fatalf("RecentUsage: %v", err)
	}
	if after.Size < before.Size+mib || after.Inodes != before.Inodes+1 {
		t.Fatalf("after writing 1 MiB: usage %+v, before %+v", after, before)
	}
	// ImageFsInfo reports what the container stats just measured.
	if got := fsTotal(); got < total+mib {
		t.Errorf("ImageFsInfo used bytes %d after the layer grew by 1 MiB, was %d", got, total)
	}

	// The kubelet's periodic stats take a walk younger than their bound
	// instead of walking again; a bound of zero always walks.
	write("r", mib)
	if u, err := svc.RecentUsage(ctx, key, time.Minute); err != nil || u != after {
		t.Errorf("RecentUsage within a minute of the last walk: %+v, %v; want that walk's %+v", u, err, after)
	}
	if u, err := svc.RecentUsage(ctx, key, 0); err != nil || u.Size < after.Size+mib {
		t.Errorf("RecentUsage with no bound: %+v, %v; want the new MiB over %+v", u, err, after)
	}
	if after, err = svc.RecentUsage(ctx, key, 0); err != nil {
		t.Fatalf("RecentUsage: %v", err)
	}

	// A walk before the seal is not final; the first one after it is.
	svc.SealUsage(key)
	write("b", mib)
	sealed, err := svc.RecentUsage(ctx, key, 0)
	if err != nil {
		t.Fatalf("RecentUsage: %v", err)
	}
	if sealed.Size < after.Size+mib {
		t.Fatalf("first walk after the seal: usage %+v, want the second MiB over %+v", sealed, after)
	}
	write("c", mib)
	if u, _ := svc.RecentUsage(ctx, key, 0); u != sealed {
		t.Errorf("sealed layer measured again: %+v, want the usage kept %+v", u, sealed)
	}

	withLayer := fsTotal()
	if err := sn.Remove(ctx, key); err != nil {
		t.Fatalf("remove snapshot: %v", err)
	}
	removed = true
	if got := fsTotal(); got > withLayer-uint64(sealed.Size) {
		t.Errorf("ImageFsInfo used bytes %d after removing a layer of %d bytes, was %d", got, sealed.Size, withLayer)
	}
	if _, err := svc.RecentUsage(ctx, key, 0); !errdefs.IsNotFound(err) {
		t.Errorf("RecentUsage of a removed layer: %v, want NotFound", err)
	}
}
