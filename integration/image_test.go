//go:build linux

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// TestPullImage pulls through the hosts.toml directory, both by a mirrored
// made-up registry name and by the registry's own plain-HTTP address, and
// then lists, inspects and removes what it pulled.
func TestPullImage(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	e := env
	ctx := rpcCtx(t)

	ref := e.PullTestImage
	if resp, err := c.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("ImageStatus before pull: %v", err)
	} else if resp.Image != nil {
		t.Fatalf("ImageStatus before pull found %v", resp.Image)
	}

	pulled, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("PullImage %s: %v", ref, err)
	}
	if pulled.ImageRef != e.PullTestID {
		t.Errorf("PullImage returned %q, want the image ID %s", pulled.ImageRef, e.PullTestID)
	}
	// Pulling again is a no-op with the same answer.
	again, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil || again.ImageRef != pulled.ImageRef {
		t.Errorf("second PullImage = %v, %v; want %s", again, err, pulled.ImageRef)
	}

	manifest, err := e.Registry.ManifestDigest(ctx, "pulltest/busybox", "v1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatal(err)
	}
	img := st.Image
	if img == nil {
		t.Fatalf("ImageStatus after pull: not found")
	}
	repoDigest := testenv.RegistryAlias + "/pulltest/busybox@" + manifest.String()
	if img.Id != e.PullTestID || !contains(img.RepoTags, ref) || !contains(img.RepoDigests, repoDigest) || img.Size == 0 {
		t.Errorf("ImageStatus = id %s tags %v digests %v size %d; want id %s, tag %s, digest %s, a size",
			img.Id, img.RepoTags, img.RepoDigests, img.Size, e.PullTestID, ref, repoDigest)
	}
	for _, spec := range []string{e.PullTestID, repoDigest} {
		st, err := c.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: spec}})
		if err != nil || st.Image == nil || st.Image.Id != e.PullTestID {
			t.Errorf("ImageStatus(%s) = %v, %v; want the pulled image", spec, st.GetImage(), err)
		}
	}

	list, err := c.img.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, i := range list.Images {
		found = found || i.Id == e.PullTestID
	}
	if !found {
		t.Errorf("ListImages lacks %s", e.PullTestID)
	}
	list, err = c.img.ListImages(ctx, &runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: &runtime.ImageSpec{Image: ref}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Images) != 1 || list.Images[0].Id != e.PullTestID {
		t.Errorf("ListImages(filter %s) = %v, want just that image", ref, list.Images)
	}

	// The registry's own address, plain HTTP by its hosts.toml.
	pause, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: e.PauseImage}})
	if err != nil {
		t.Fatalf("PullImage %s: %v", e.PauseImage, err)
	}
	if pause.ImageRef != e.PauseImageID {
		t.Errorf("PullImage %s = %q, want %s", e.PauseImage, pause.ImageRef, e.PauseImageID)
	}

	for _, r := range []string{ref, e.PauseImage} {
		for i := 0; i < 2; i++ {
			if _, err := c.img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: r}}); err != nil {
				t.Errorf("RemoveImage %s #%d: %v", r, i+1, err)
			}
		}
		st, err := c.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: r}})
		if err != nil || st.Image != nil {
			t.Errorf("ImageStatus after RemoveImage %s = %v, %v; want no image", r, st.GetImage(), err)
		}
	}

	// A tag the registry does not have fails, quickly.
	short, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.img.PullImage(short, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: testenv.RegistryAlias + "/busybox:no-such-tag"}}); err == nil {
		t.Errorf("PullImage of a missing tag succeeded")
	} else if !strings.Contains(err.Error(), "no-such-tag") {
		t.Errorf("PullImage of a missing tag: %v; want the error to name the reference", err)
	}

	fs, err := c.img.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
	if err != nil {
		t.Fatalf("ImageFsInfo: %v", err)
	}
	if len(fs.ImageFilesystems) == 0 || fs.ImageFilesystems[0].GetFsId().GetMountpoint() == "" || fs.ImageFilesystems[0].GetUsedBytes().GetValue() == 0 {
		t.Errorf("ImageFsInfo = %v, want a filesystem with a mountpoint and usage", fs.ImageFilesystems)
	}
}
