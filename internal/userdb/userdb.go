// Package userdb keeps a copy of each image's user database (/etc/passwd
// and /etc/group) so that resolving a new container's user does not mount
// its root filesystem.
//
// containerd's user options (oci.WithUser, oci.WithAdditionalGIDs) read
// those files from the container's snapshot: they mount it read-only in
// the host's mount namespace, read, and unmount. Every CreateContainer
// pays a mount, an unmount and the RCU grace period the unmount waits
// for, under the kernel's mount-table lock that every `runc create` on the
// node needs too (README, "What task creation waits on"). An image's files
// never change and a new container's snapshot holds exactly its image's
// files, so the first container of an image copies the two files out and
// later ones read the copy. The options run unchanged on that copy - given
// a container without a snapshot they read a root directory instead - so
// the resolution, its errors included, stays containerd's.
package userdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/continuity/fs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxFileBytes is the largest user file copied: containerd's options
// refuse larger ones, and an image holding one keeps that answer by
// being resolved on its snapshot.
const maxFileBytes = 10 << 20

// files are the paths the user options read, relative to the root.
var files = []string{"/etc/passwd", "/etc/group"}

// errUncacheable: the image's files are not plain files within bounds;
// its containers are resolved on their snapshots, as without the cache.
var errUncacheable = errors.New("user database not copyable")

// Cache holds the copies, one directory per image, at most max of them;
// the least recently used unused copy goes first.
type Cache struct {
	dir string
	max int

	mu      sync.Mutex
	entries map[string]*entry
	clock   uint64
	seq     uint64

	fills atomic.Int64
}

type entry struct {
	// ready is closed when the copy is made or known to be impossible.
	ready chan struct{}
	// root holds etc/passwd and etc/group as the image has them (either
	// may be absent); "" when the image's files cannot be copied.
	root string
	// users counts the spec generations reading root; used is the clock
	// at the last one's end.
	users int
	used  uint64
}

// New returns a cache in dir, which it empties: the copies of an earlier
// run are not known to belong to the images their names would say.
func New(dir string, max int) *Cache {
	_ = os.RemoveAll(dir)
	if max < 1 {
		max = 1
	}
	return &Cache{dir: dir, max: max, entries: map[string]*entry{}}
}

// Fills counts the copies made (each one mount of a snapshot).
func (c *Cache) Fills() int64 { return c.fills.Load() }

// Opt runs opts, user options of containerd's oci package, on image's
// copied user database instead of the container's snapshot; the first
// container of an image makes the copy. image must name the content
// exactly (an image ID or digest). When the copy cannot be made, opts run
// as they would without the cache.
func (c *Cache) Opt(image string, opts ...oci.SpecOpts) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, ctr *containers.Container, s *oci.Spec) error {
		root, release, err := c.acquire(ctx, image, client, ctr)
		if err != nil {
			return err
		}
		defer release()
		if root == "" {
			return oci.Compose(opts...)(ctx, client, ctr, s)
		}
		// Without a snapshot the options read s.Root.Path; both are put
		// back before the rest of the spec is generated.
		detached := *ctr
		detached.Snapshotter, detached.SnapshotKey = "", ""
		saved := s.Root
		s.Root = &specs.Root{Path: root}
		defer func() { s.Root = saved }()
		return oci.Compose(opts...)(ctx, client, &detached, s)
	}
}

// acquire returns the copy's root for image ("" to resolve on the
// snapshot), making it first if no one has; release must be called once
// the root is no longer read.
func (c *Cache) acquire(ctx context.Context, image string, client oci.Client, ctr *containers.Container) (string, func(), error) {
	c.mu.Lock()
	e, ok := c.entries[image]
	if !ok {
		e = &entry{ready: make(chan struct{})}
		c.entries[image] = e
	}
	e.users++
	c.mu.Unlock()
	release := func() { c.release(e) }

	if !ok {
		root, err := c.fill(ctx, client, ctr)
		e.root = root
		if err != nil && !errors.Is(err, errUncacheable) {
			// A failed mount or a cancelled request says nothing about
			// the image: the next container tries again.
			c.mu.Lock()
			if c.entries[image] == e {
				delete(c.entries, image)
			}
			c.mu.Unlock()
		}
		close(e.ready)
		return e.root, release, nil
	}
	select {
	case <-e.ready:
		return e.root, release, nil
	case <-ctx.Done():
		release()
		return "", nil, fmt.Errorf("wait for the user database of image %s: %w", image, ctx.Err())
	}
}

func (c *Cache) release(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.users--
	c.clock++
	e.used = c.clock
	for len(c.entries) > c.max {
		var oldestKey string
		var oldest *entry
		for k, x := range c.entries {
			if x.users == 0 && (oldest == nil || x.used < oldest.used) {
				oldestKey, oldest = k, x
			}
		}
		if oldest == nil {
			return
		}
		delete(c.entries, oldestKey)
		if oldest.root != "" {
			_ = os.RemoveAll(oldest.root)
		}
	}
}

// fill copies the user files of ctr's snapshot into a new directory.
func (c *Cache) fill(ctx context.Context, client oci.Client, ctr *containers.Container) (string, error) {
	if ctr.Snapshotter == "" || ctr.SnapshotKey == "" {
		// This container's, not the image's: the next one may copy.
		return "", fmt.Errorf("container %s has no snapshot to copy from", ctr.ID)
	}
	mounts, err := client.SnapshotService(ctr.Snapshotter).Mounts(ctx, ctr.SnapshotKey)
	if err != nil {
		return "", fmt.Errorf("mounts of snapshot %s: %w", ctr.SnapshotKey, err)
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return "", fmt.Errorf("user database cache: %w", err)
	}
	c.mu.Lock()
	c.seq++
	final := filepath.Join(c.dir, fmt.Sprint(c.seq))
	c.mu.Unlock()
	tmp := final + ".tmp"
	if err := os.MkdirAll(filepath.Join(tmp, "etc"), 0o700); err != nil {
		return "", fmt.Errorf("user database cache: %w", err)
	}
	err = mount.WithReadonlyTempMount(ctx, mounts, func(rootfs string) error {
		for _, name := range files {
			if err := copyFile(rootfs, name, tmp); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("copy the user database of container %s: %w", ctr.ID, err)
	}
	c.fills.Add(1)
	return final, nil
}

// copyFile copies rootfs's name, resolved within rootfs as containerd's
// options resolve it, to the same path under dst. An absent file stays
// absent; anything the options would not read as a regular file within
// their bound is errUncacheable, so they meet it on the snapshot itself.
func copyFile(rootfs, name, dst string) error {
	p, err := fs.RootPath(rootfs, name)
	if err != nil {
		return fmt.Errorf("resolve %s: %v: %w", name, err, errUncacheable)
	}
	info, err := os.Stat(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %v: %w", name, err, errUncacheable)
	}
	if !info.Mode().IsRegular() || info.Size() > maxFileBytes {
		return fmt.Errorf("%s is not a regular file under %d bytes: %w", name, maxFileBytes, errUncacheable)
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", name, err, errUncacheable)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxFileBytes {
		return fmt.Errorf("%s grew past %d bytes: %w", name, maxFileBytes, errUncacheable)
	}
	return os.WriteFile(filepath.Join(dst, name), data, 0o600)
}
