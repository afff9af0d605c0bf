//go:build linux

package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/remotes/docker/config"
)

// TestHarnessImagesRunOnContainerd checks the environment without crishim:
// the images pushed by the harness pull through the hosts.toml directory
// with containerd's own client, unpack, and run under runc.
func TestHarnessImagesRunOnContainerd(t *testing.T) {
	e := needEnv(t)
	const ns = "crishim-it-harness"
	client, err := e.Containerd.Client(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
	defer cancel()

	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{HostDir: config.HostDirFromRoot(e.RegistryConfigDir)}),
	})
	for _, ref := range []string{e.BusyboxImage, e.Registry.Host + "/busybox:latest"} {
		img, err := client.Pull(ctx, ref, containerd.WithResolver(resolver), containerd.WithPullUnpack)
		if err != nil {
			t.Fatalf("pull %s with containerd's client: %v", ref, err)
		}
		cfg, err := img.Config(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Digest.String() != e.BusyboxID {
			t.Errorf("pulled %s has config %s, pushed %s", ref, cfg.Digest, e.BusyboxID)
		}
	}
	defer func() {
		for _, ref := range []string{e.BusyboxImage, e.Registry.Host + "/busybox:latest"} {
			if err := client.ImageService().Delete(ctx, ref, images.SynchronousDelete()); err != nil {
				t.Errorf("delete image %s: %v", ref, err)
			}
		}
		if err := client.NamespaceService().Delete(ctx, ns); err != nil {
			t.Logf("delete namespace %s: %v", ns, err)
		}
		// runc's per-namespace state directory lives outside the test directory.
		_ = os.Remove(filepath.Join("/run/containerd/runc", ns))
	}()

	img, err := client.GetImage(ctx, e.BusyboxImage)
	if err != nil {
		t.Fatal(err)
	}
	id := "harness-" + randomSuffix()
	ctr, err := client.NewContainer(ctx, id,
		containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", "echo hello from $(cat /etc/passwd | head -n1 | cut -d: -f1); ls /bin/httpd")))
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	defer func() {
		if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			t.Errorf("delete container: %v", err)
		}
	}()
	var out, errOut bytes.Buffer
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out, &errOut)))
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("start task: %v", err)
	}
	st := <-exitCh
	// The copy of the output may trail the exit; it ends with the IO.
	task.IO().Wait()
	if _, err := task.Delete(ctx); err != nil {
		t.Errorf("delete task: %v", err)
	}
	if st.ExitCode() != 0 || !strings.Contains(out.String(), "hello from root") {
		t.Fatalf("busybox container exited %d with stdout %q, stderr %q", st.ExitCode(), out.String(), errOut.String())
	}
}
