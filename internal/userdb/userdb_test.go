package userdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crishim/crishim/integration/testenv"
)

// The tests build image-like snapshots on a private containerd
// (testenv.Shared) and compare the copy's answers with containerd's
// options reading the snapshot itself.
const testNamespace = "crishim-userdb-test"

var stack testenv.Shared

func TestMain(m *testing.M) { os.Exit(stack.Main(m)) }

type env struct {
	t      testing.TB
	ctx    context.Context
	client *containerd.Client
	n      int
}

func setup(t testing.TB) *env {
	stk := stack.Env(t)
	client, err := containerd.New(stk.Containerd.Address, containerd.WithDefaultNamespace(testNamespace))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	// The lease keeps containerd's garbage collector off the snapshots,
	// which nothing else references.
	ctx, done, err := client.WithLease(namespaces.WithNamespace(context.Background(), testNamespace))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = done(context.WithoutCancel(ctx)) })
	return &env{t: t, ctx: ctx, client: client}
}

func (e *env) name(prefix string) string {
	e.n++
	return fmt.Sprintf("%s-%s-%d", prefix, strings.NewReplacer("/", "-").Replace(e.t.Name()), e.n)
}

// image commits a one-layer snapshot holding files: path → content, or
// "-> target" for a symbolic link, or "/" for a directory.
func (e *env) image(files map[string]string) string {
	e.t.Helper()
	sn := e.client.SnapshotService("overlayfs")
	name := e.name("image")
	key := name + "-active"
	mounts, err := sn.Prepare(e.ctx, key, "")
	if err != nil {
		e.t.Fatal(err)
	}
	err = mount.WithTempMount(e.ctx, mounts, func(root string) error {
		for p, content := range files {
			full := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				return err
			}
			switch {
			case content == "/":
				err = os.MkdirAll(full, 0o755)
			case strings.HasPrefix(content, "-> "):
				err = os.Symlink(strings.TrimPrefix(content, "-> "), full)
			default:
				err = os.WriteFile(full, []byte(content), 0o644)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := sn.Commit(e.ctx, name, key); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sn.Remove(context.WithoutCancel(e.ctx), name) })
	return name
}

// container is a new container's view of image: a fresh active snapshot.
func (e *env) container(image string) *containers.Container {
	e.t.Helper()
	sn := e.client.SnapshotService("overlayfs")
	key := e.name("ctr")
	if _, err := sn.Prepare(e.ctx, key, image); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sn.Remove(context.WithoutCancel(e.ctx), key) })
	return &containers.Container{ID: key, Snapshotter: "overlayfs", SnapshotKey: key}
}

// resolve runs opt as spec generation does and returns the user it set.
func (e *env) resolve(opt oci.SpecOpts, ctr *containers.Container) (specs.User, error) {
	e.t.Helper()
	s := &oci.Spec{Root: &specs.Root{Path: "rootfs"}, Process: &specs.Process{}, Linux: &specs.Linux{}}
	err := opt(e.ctx, e.client, ctr, s)
	if s.Root == nil || s.Root.Path != "rootfs" {
		e.t.Fatalf("spec root after the user options: %+v, want rootfs", s.Root)
	}
	return s.Process.User, err
}

// userOpts is what crishim asks for a container running as user.
func userOpts(user string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if user != "" {
		opts = append(opts, oci.WithUser(user))
	}
	member, _, _ := strings.Cut(user, ":")
	if member == "" {
		member = "0"
	}
	return append(opts, oci.WithAdditionalGIDs(member))
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:2:2::/:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n"
	group  = "root:x:0:\nwheel:x:10:app,daemon\naudio:x:29:app\nstaff:x:50:root\napp:x:1000:\n"
)

func TestSameAsOnTheSnapshot(t *testing.T) {
	e := setup(t)
	images := map[string]string{
		"full":      e.image(map[string]string{"etc/passwd": passwd, "etc/group": group}),
		"no group":  e.image(map[string]string{"etc/passwd": passwd}),
		"symlinked": e.image(map[string]string{"etc/passwd": "-> /usr/lib/passwd", "usr/lib/passwd": passwd, "etc/group": "-> ../usr/lib/group", "usr/lib/group": group}),
		"no etc":    e.image(map[string]string{"bin/sh": "#"}),
		"dir":       e.image(map[string]string{"etc/passwd": "/", "etc/group": group}),
	}
	cache := New(t.TempDir(), 16)
	users := []string{"", "0", "root", "app", "1000", "1000:10", "app:wheel", "app:audio", "daemon", "4242", "nosuch", "app:nosuchgroup", "1000:4242"}
	for imgName, img := range images {
		for _, u := range users {
			want, wantErr := e.resolve(oci.Compose(userOpts(u)...), e.container(img))
			for round := range 2 {
				got, err := e.resolve(cache.Opt(img, userOpts(u)...), e.container(img))
				if (err == nil) != (wantErr == nil) || !slices.Equal(got.AdditionalGids, want.AdditionalGids) ||
					got.UID != want.UID || got.GID != want.GID {
					t.Errorf("image %q, user %q, use %d: copy gives %+v, %v; snapshot gives %+v, %v", imgName, u, round+1, got, err, want, wantErr)
				}
			}
		}
	}
	// Not both wrong the same way: the snapshot's own answers.
	app, err := e.resolve(cache.Opt(images["full"], userOpts("app")...), e.container(images["full"]))
	if err != nil || app.UID != 1000 || app.GID != 1000 || !slices.Contains(app.AdditionalGids, 10) || !slices.Contains(app.AdditionalGids, 29) {
		t.Errorf("app on the full image: %+v, %v; want uid and gid 1000 in wheel (10) and audio (29)", app, err)
	}
	if _, err := e.resolve(cache.Opt(images["full"], userOpts("nosuch")...), e.container(images["full"])); err == nil {
		t.Error("an unknown user name resolved")
	}
	// One copy per image whose files can be copied; the directory
	// /etc/passwd is met on the snapshot each time.
	if got := cache.Fills(); got != 4 {
		t.Errorf("%d copies made, want 4 (one per copyable image)", got)
	}
}

func TestCopyReadWithoutTheSnapshot(t *testing.T) {
	e := setup(t)
	img := e.image(map[string]string{"etc/passwd": passwd, "etc/group": group})
	cache := New(t.TempDir(), 16)
	if _, err := e.resolve(cache.Opt(img, userOpts("app")...), e.container(img)); err != nil {
		t.Fatal(err)
	}
	// A container whose snapshot cannot be mounted: only the copy can
	// answer for it.
	gone := &containers.Container{ID: "gone", Snapshotter: "overlayfs", SnapshotKey: e.name("missing")}
	if _, err := e.resolve(oci.Compose(userOpts("app")...), gone); !errdefs.IsNotFound(err) {
		t.Fatalf("on the missing snapshot: %v, want NotFound", err)
	}
	got, err := e.resolve(cache.Opt(img, userOpts("app")...), gone)
	if err != nil || got.UID != 1000 || !slices.Contains(got.AdditionalGids, 29) {
		t.Errorf("from the copy: %+v, %v; want app's uid 1000 and group 29", got, err)
	}
	if cache.Fills() != 1 {
		t.Errorf("%d copies made, want 1", cache.Fills())
	}
}

func TestFirstUseTogether(t *testing.T) {
	e := setup(t)
	img := e.image(map[string]string{"etc/passwd": passwd, "etc/group": group})
	cache := New(t.TempDir(), 16)
	ctrs := make([]*containers.Container, 8)
	for i := range ctrs {
		ctrs[i] = e.container(img)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ctrs))
	got := make([]specs.User, len(ctrs))
	for i, ctr := range ctrs {
		wg.Go(func() {
			s := &oci.Spec{Root: &specs.Root{Path: "rootfs"}, Process: &specs.Process{}, Linux: &specs.Linux{}}
			errs[i] = cache.Opt(img, userOpts("1000:10")...)(e.ctx, e.client, ctr, s)
			got[i] = s.Process.User
		})
	}
	wg.Wait()
	for i := range ctrs {
		if errs[i] != nil || got[i].UID != 1000 || got[i].GID != 10 {
			t.Errorf("container %d: %+v, %v; want uid 1000, gid 10", i, got[i], errs[i])
		}
	}
	if cache.Fills() != 1 {
		t.Errorf("%d copies made for one image, want 1", cache.Fills())
	}
}

func TestFailedCopyTriedAgain(t *testing.T) {
	e := setup(t)
	img := e.image(map[string]string{"etc/passwd": passwd})
	cache := New(t.TempDir(), 16)
	gone := &containers.Container{ID: "gone", Snapshotter: "overlayfs", SnapshotKey: e.name("missing")}
	if _, err := e.resolve(cache.Opt(img, userOpts("app")...), gone); !errdefs.IsNotFound(err) {
		t.Fatalf("first container's snapshot missing: %v, want containerd's NotFound", err)
	}
	got, err := e.resolve(cache.Opt(img, userOpts("app")...), e.container(img))
	if err != nil || got.UID != 1000 {
		t.Fatalf("next container: %+v, %v", got, err)
	}
	if cache.Fills() != 1 {
		t.Errorf("%d copies made, want 1 (by the second container)", cache.Fills())
	}
}

func TestLeastRecentlyUsedCopyGoes(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	cache := New(dir, 2)
	var imgs []string
	for range 3 {
		imgs = append(imgs, e.image(map[string]string{"etc/passwd": passwd}))
	}
	use := func(img string) {
		t.Helper()
		if _, err := e.resolve(cache.Opt(img, userOpts("app")...), e.container(img)); err != nil {
			t.Fatal(err)
		}
	}
	use(imgs[0])
	use(imgs[1])
	use(imgs[0])
	use(imgs[2]) // the copy of imgs[1] goes
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("%d copies on disk, want 2", len(entries))
	}
	use(imgs[0])
	if cache.Fills() != 3 {
		t.Errorf("%d copies made, want 3 (imgs[0] kept)", cache.Fills())
	}
	use(imgs[1])
	if cache.Fills() != 4 {
		t.Errorf("%d copies made, want 4 (imgs[1] copied again)", cache.Fills())
	}
}

// BenchmarkResolve: resolving a named user and its groups on the
// container's snapshot (a mount and an unmount) against the copy.
func BenchmarkResolve(b *testing.B) {
	e := setup(b)
	img := e.image(map[string]string{"etc/passwd": passwd, "etc/group": group})
	ctr := e.container(img)
	cache := New(b.TempDir(), 16)
	for _, bc := range []struct {
		name string
		opt  oci.SpecOpts
	}{
		{"snapshot", oci.Compose(userOpts("app")...)},
		{"copy", cache.Opt(img, userOpts("app")...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := e.resolve(bc.opt, ctr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
