package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container commands. busybox's sh interrupts `wait` for a trapped signal,
// so the cooperative one exits as soon as SIGTERM arrives; the ignoring
// one only goes with SIGKILL.
const (
	cooperativeScript = "trap 'exit 0' TERM; sleep 3600 & wait"
	ignorerScript     = "trap '' TERM; sleep 3600 & wait"
)

// Measure names shared by the workload and the table.
const (
	mRunPod        = "RunPodSandbox"
	mCreate        = "CreateContainer"
	mStart         = "StartContainer"
	mStatus        = "ContainerStatus"
	mListPods      = "ListPodSandbox"
	mStop          = "StopContainer"
	mRemove        = "RemoveContainer"
	mStopPod       = "StopPodSandbox"
	mRemovePod     = "RemovePodSandbox"
	mToRunning     = "RunPodSandbox → container RUNNING"
	mLifecycle     = "full lifecycle"
	mToRunningC8   = "RunPodSandbox → container RUNNING at c=8"
	mLifecycleC8   = "full lifecycle at c=8"
	mIgnorerExcess = "ignorer excess"
)

// recorder collects duration samples by measure; safe for concurrent use.
type recorder struct {
	mu      sync.Mutex
	samples map[string][]time.Duration
}

func newRecorder() *recorder { return &recorder{samples: map[string][]time.Duration{}} }

func (r *recorder) add(measure string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples[measure] = append(r.samples[measure], d)
}

func (r *recorder) get(measure string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.samples[measure]
}

// client is one CRI endpoint's runtime and image services.
type client struct {
	conn   grpc.ClientConnInterface
	rt     runtime.RuntimeServiceClient
	img    runtime.ImageServiceClient
	logDir string
	image  string
}

// rpcTimeout bounds every single call; a hung endpoint fails the run
// instead of stalling it.
const rpcTimeout = 2 * time.Minute

func randomUID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *client) podConfig(name string) *runtime.PodSandboxConfig {
	uid := randomUID()
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Uid: uid, Namespace: "crishim-bench"},
		Hostname:     name,
		LogDirectory: filepath.Join(c.logDir, uid),
		Labels:       map[string]string{"app": "crishim-bench"},
		Linux:        &runtime.LinuxPodSandboxConfig{},
	}
}

func (c *client) containerConfig(script string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "app"},
		Image:    &runtime.ImageSpec{Image: c.image},
		Command:  []string{"sh", "-c", script},
		LogPath:  "app.log",
		Labels:   map[string]string{"app": "crishim-bench"},
		Linux:    &runtime.LinuxContainerConfig{},
	}
}

// timed runs one call under its own timeout and records its latency when
// it succeeds.
func timed(rec *recorder, measure string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	start := time.Now()
	if err := fn(ctx); err != nil {
		return fmt.Errorf("%s: %w", measure, err)
	}
	if rec != nil {
		rec.add(measure, time.Since(start))
	}
	return nil
}

// runningPod is a pod with one started container.
type runningPod struct {
	podID, ctrID string
}

// startPod runs a pod, creates and starts one container with script and
// returns once ContainerStatus reports it RUNNING. Per-RPC latencies go to
// rpcs (nil: not recorded); the whole span goes to toRunning under e2e.
func (c *client) startPod(name, script string, rpcs, e2e *recorder, toRunning string) (runningPod, error) {
	var p runningPod
	cfg := c.podConfig(name)
	start := time.Now()
	err := timed(rpcs, mRunPod, func(ctx context.Context) error {
		resp, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err == nil {
			p.podID = resp.PodSandboxId
		}
		return err
	})
	if err != nil {
		return p, err
	}
	err = timed(rpcs, mCreate, func(ctx context.Context) error {
		resp, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.podID, Config: c.containerConfig(script), SandboxConfig: cfg})
		if err == nil {
			p.ctrID = resp.ContainerId
		}
		return err
	})
	if err != nil {
		return p, err
	}
	if err := timed(rpcs, mStart, func(ctx context.Context) error {
		_, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: p.ctrID})
		return err
	}); err != nil {
		return p, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var state runtime.ContainerState
		if err := timed(rpcs, mStatus, func(ctx context.Context) error {
			resp, err := c.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: p.ctrID})
			if err == nil {
				state = resp.GetStatus().GetState()
			}
			return err
		}); err != nil {
			return p, err
		}
		if state == runtime.ContainerState_CONTAINER_RUNNING {
			break
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("container %s is %s 30s after StartContainer", p.ctrID, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if e2e != nil {
		e2e.add(toRunning, time.Since(start))
	}
	return p, nil
}

// stopPod stops and removes a pod's container and then the pod, recording
// each call in rpcs (nil: not recorded).
func (c *client) stopPod(p runningPod, stopTimeout int64, rpcs *recorder) error {
	if p.ctrID != "" {
		if err := timed(rpcs, mStop, func(ctx context.Context) error {
			_, err := c.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: p.ctrID, Timeout: stopTimeout})
			return err
		}); err != nil {
			return err
		}
		if err := timed(rpcs, mRemove, func(ctx context.Context) error {
			_, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: p.ctrID})
			return err
		}); err != nil {
			return err
		}
	}
	if p.podID == "" {
		return nil
	}
	if err := timed(rpcs, mStopPod, func(ctx context.Context) error {
		_, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.podID})
		return err
	}); err != nil {
		return err
	}
	return timed(rpcs, mRemovePod, func(ctx context.Context) error {
		_, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.podID})
		return err
	})
}

// discard removes what a failed lifecycle left, without recording.
func (c *client) discard(p runningPod) {
	if p.podID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	_, _ = c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.podID})
	_, _ = c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.podID})
}

// lifecycle is what a kubelet does for a short-lived pod: run it, start
// a container, look at it, list pods, stop (the container exits on
// SIGTERM) and remove everything.
func (c *client) lifecycle(name string, rpcs, e2e *recorder, toRunning, whole string) error {
	start := time.Now()
	p, err := c.startPod(name, cooperativeScript, rpcs, e2e, toRunning)
	if err != nil {
		c.discard(p)
		return err
	}
	if err := timed(rpcs, mListPods, func(ctx context.Context) error {
		_, err := c.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
		return err
	}); err != nil {
		c.discard(p)
		return err
	}
	if err := c.stopPod(p, cooperativeTimeout, rpcs); err != nil {
		c.discard(p)
		return err
	}
	if e2e != nil {
		e2e.add(whole, time.Since(start))
	}
	return nil
}

// cooperativeTimeout is the StopContainer grace of the lifecycle
// workload; its container exits long before.
const cooperativeTimeout = 10

// leftovers counts the pods and containers the endpoint still lists.
func (c *client) leftovers() (pods, ctrs int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	pr, err := c.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return 0, 0, err
	}
	cr, err := c.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		return 0, 0, err
	}
	return len(pr.Items), len(cr.Containers), nil
}

// parallel runs n jobs on workers goroutines and returns the first error.
func parallel(n, workers int, job func(i int) error) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := job(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return firstErr
}
