//go:build linux

package integration

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// imageRoundTrips is how many calls crishim made to containerd's image
// service, by its metrics.
func imageRoundTrips(t *testing.T, url string) float64 {
	t.Helper()
	var n float64
	re := regexp.MustCompile(`(?m)^crishim_containerd_requests_total\{[^}]*method="images\.v1\.Images/[^"]*"[^}]*\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(httpGet(t, url), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatalf("metric value %q: %v", m[1], err)
		}
		n += v
	}
	return n
}

// TestImageReadsFromMemory: ImageStatus and ListImages, which the kubelet
// calls before every container start and while idle, are answered from
// kept image records without a containerd round trip; a change made
// behind crishim's back (as ctr would) reaches them through containerd's
// events, and crishim's own pulls and removals at once.
func TestImageReadsFromMemory(t *testing.T) {
	t.Parallel()
	e := needEnv(t)
	metricsPort := freePort(t)
	cr, _ := startOwnCrishim(t, "imageindex", "--metrics-address", fmt.Sprintf("127.0.0.1:%d", metricsPort))
	ns := ""
	args := cr.Args()
	for i, a := range args {
		if a == "--containerd-namespace" && i+1 < len(args) {
			ns = args[i+1]
		}
	}
	if ns == "" {
		t.Fatalf("no --containerd-namespace in %v", args)
	}
	conn, err := testenv.Dial(cr.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	img := runtime.NewImageServiceClient(conn)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pulled, err := img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: e.BusyboxImage}})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	status := func(ref string) *runtime.Image {
		t.Helper()
		resp, err := img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}})
		if err != nil {
			t.Fatalf("ImageStatus %s: %v", ref, err)
		}
		return resp.Image
	}
	// Right after the pull, by its own write: no event needed.
	if got := status(e.BusyboxImage); got == nil || got.Id != pulled.ImageRef {
		t.Fatalf("ImageStatus right after the pull: %v, want ID %s", got, pulled.ImageRef)
	}

	// The subscription becomes live in the background; from then on the
	// records are kept after one list.
	deadline := time.Now().Add(30 * time.Second)
	for {
		before := imageRoundTrips(t, metricsURL)
		status(e.BusyboxImage)
		if _, err := img.ListImages(ctx, &runtime.ListImagesRequest{}); err != nil {
			t.Fatal(err)
		}
		if imageRoundTrips(t, metricsURL) == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ImageStatus and ListImages still call containerd's image service after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	first, err := img.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	before := imageRoundTrips(t, metricsURL)
	for range 20 {
		if got := status(e.BusyboxImage); got == nil {
			t.Fatal("the pulled image is gone from ImageStatus")
		}
		if got := status(pulled.ImageRef); got == nil {
			t.Fatal("ImageStatus by ID found nothing")
		}
		if got := status("example.invalid/absent:1"); got != nil {
			t.Fatalf("ImageStatus of an absent image: %v", got)
		}
		list, err := img.ListImages(ctx, &runtime.ListImagesRequest{})
		if err != nil || len(list.Images) != len(first.Images) || !slices.ContainsFunc(list.Images, func(i *runtime.Image) bool { return i.Id == pulled.ImageRef }) {
			t.Fatalf("ListImages: %v, %v; want the %d images of the first list, the pulled one among them", list, err, len(first.Images))
		}
	}
	if n := imageRoundTrips(t, metricsURL) - before; n != 0 {
		t.Errorf("%v image service round trips for 80 reads of kept records, want 0", n)
	}

	// A tag added and the image's names deleted behind crishim's back.
	client, err := containerd.New(e.Containerd.Address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cctx := namespaces.WithNamespace(ctx, ns)
	recs, err := client.ImageService().List(cctx)
	if err != nil || len(recs) == 0 {
		t.Fatalf("crishim's image records: %v, %v", recs, err)
	}
	const extra = "example.invalid/extra:1"
	if _, err := client.ImageService().Create(cctx, images.Image{Name: extra, Target: recs[0].Target}); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen 10 s after the change", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a tag made by another client", func() bool {
		got := status(extra)
		return got != nil && slices.Contains(got.RepoTags, extra)
	})
	for _, r := range append(recs, images.Image{Name: extra}) {
		if err := client.ImageService().Delete(cctx, r.Name); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("the image removed by another client", func() bool { return status(e.BusyboxImage) == nil && status(pulled.ImageRef) == nil })

	// crishim's own pull and removal show at once.
	if _, err := img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: e.BusyboxImage}}); err != nil {
		t.Fatalf("pull again: %v", err)
	}
	if status(e.BusyboxImage) == nil {
		t.Fatal("ImageStatus right after the second pull found nothing")
	}
	if _, err := img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: pulled.ImageRef}}); err != nil {
		t.Fatal(err)
	}
	if got := status(e.BusyboxImage); got != nil {
		t.Fatalf("ImageStatus right after RemoveImage: %v", got)
	}
}
