package image

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/images"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/connectivity"

	"github.com/crishim/crishim/internal/eventsub"
)

// imagesMarkerTopic carries the marker of the image record subscription.
const imagesMarkerTopic = "/crishim/images/subscribed"

// recordIndex keeps the namespace's image records between changes, so
// that ImageStatus, ListImages and the lookups of container creation and
// RunPodSandbox need no containerd round trip. The records are kept only
// while an event subscription to image changes is live, and dropped on
// every change: containerd's image events (whoever made the change, ctr
// included), crishim's own writes (at once, not when their events come
// back), and the subscription breaking. A read that finds nothing kept
// lists the records and keeps them, unless something changed while it
// listed.
type recordIndex struct {
	mu      sync.Mutex
	live    bool
	gen     uint64 // counts changes, so a list older than one is not kept
	list    []images.Image
	byName  map[string]images.Image // nil: nothing kept
	started bool
	stop    context.CancelFunc
}

// changed drops what is kept.
func (x *recordIndex) changed() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	x.list, x.byName = nil, nil
}

// setLive says whether the subscription is live; either way what is kept
// goes, as changes may have been missed.
func (x *recordIndex) setLive(live bool) {
	x.mu.Lock()
	x.live = live
	x.mu.Unlock()
	x.changed()
}

// kept returns the kept records, or the generation a new list must carry
// to be kept.
func (x *recordIndex) kept() (list []images.Image, byName map[string]images.Image, gen uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.list, x.byName, x.gen
}

func (x *recordIndex) keep(gen uint64, list []images.Image) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.live || gen != x.gen {
		return
	}
	byName := make(map[string]images.Image, len(list))
	for _, r := range list {
		byName[r.Name] = r
	}
	x.list, x.byName = list, byName
}

// follow starts, on first use, the subscription that keeps the index.
func (s *Service) follow() {
	x := &s.index
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.started || s.client == nil {
		return
	}
	x.started = true
	ctx, cancel := context.WithCancel(context.Background())
	x.stop = cancel
	ns := s.client.DefaultNamespace()
	var filters []string
	for _, topic := range []string{"/images/create", "/images/update", "/images/delete"} {
		filters = append(filters, fmt.Sprintf("namespace==%q,topic==%q", ns, topic))
	}
	go eventsub.Follow(ctx, s.client.EventService(), ns, imagesMarkerTopic, filters, eventsub.Handler{
		Live:  func() { x.setLive(true) },
		Event: func(*events.Envelope) { x.changed() },
		Lost:  func(error) { x.setLive(false) },
	}, func() bool { return s.client.Conn().GetState() == connectivity.Shutdown },
		logrus.WithField("component", "images"))
}

// Close stops keeping image records.
func (s *Service) Close() {
	x := &s.index
	x.mu.Lock()
	defer x.mu.Unlock()
	x.started = true // none from now on
	if x.stop != nil {
		x.stop()
	}
}

// listRecords returns every image record of the namespace. The slice and
// the records are shared: callers must not change them.
func (s *Service) listRecords(ctx context.Context) ([]images.Image, error) {
	s.follow()
	list, byName, gen := s.index.kept()
	if byName != nil {
		return list, nil
	}
	list, err := s.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list image records: %w", err)
	}
	s.index.keep(gen, list)
	return list, nil
}

// getRecord returns the record called name; errdefs.ErrNotFound when there
// is none.
func (s *Service) getRecord(ctx context.Context, name string) (images.Image, error) {
	s.follow()
	_, byName, _ := s.index.kept()
	if byName != nil {
		rec, ok := byName[name]
		if !ok {
			return images.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
		}
		return rec, nil
	}
	return s.client.ImageService().Get(ctx, name)
}
