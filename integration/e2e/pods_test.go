//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// The parts of the Kubernetes Pod API the suites read, as the kubelet and
// the API server serve them in JSON.
type (
	PodList struct {
		Items []Pod `json:"items"`
	}
	Pod struct {
		Metadata struct {
			Name              string            `json:"name"`
			Namespace         string            `json:"namespace"`
			UID               string            `json:"uid"`
			Labels            map[string]string `json:"labels"`
			DeletionTimestamp *time.Time        `json:"deletionTimestamp"`
		} `json:"metadata"`
		Status PodStatus `json:"status"`
	}
	PodStatus struct {
		Phase                 string            `json:"phase"`
		Conditions            []PodCondition    `json:"conditions"`
		PodIP                 string            `json:"podIP"`
		HostIP                string            `json:"hostIP"`
		InitContainerStatuses []ContainerStatus `json:"initContainerStatuses"`
		ContainerStatuses     []ContainerStatus `json:"containerStatuses"`
	}
	PodCondition struct {
		Type   string `json:"type"`
		Status string `json:"status"`
	}
	ContainerStatus struct {
		Name         string         `json:"name"`
		Ready        bool           `json:"ready"`
		Started      *bool          `json:"started"`
		RestartCount int            `json:"restartCount"`
		Image        string         `json:"image"`
		ImageID      string         `json:"imageID"`
		ContainerID  string         `json:"containerID"`
		State        ContainerState `json:"state"`
		LastState    ContainerState `json:"lastState"`
	}
	ContainerState struct {
		Waiting *struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"waiting"`
		Running *struct {
			StartedAt time.Time `json:"startedAt"`
		} `json:"running"`
		Terminated *Terminated `json:"terminated"`
	}
	Terminated struct {
		ExitCode   int       `json:"exitCode"`
		Reason     string    `json:"reason"`
		Message    string    `json:"message"`
		StartedAt  time.Time `json:"startedAt"`
		FinishedAt time.Time `json:"finishedAt"`
	}
)

// StatusJSON is the pod's status for failure messages.
func (p *Pod) StatusJSON() string {
	if p == nil {
		return "(none)"
	}
	data, _ := json.Marshal(p.Status)
	return string(data)
}

// Condition reports whether the pod has condition typ with status True.
func (p *Pod) Condition(typ string) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status == "True"
		}
	}
	return false
}

// Container is the status of the app (or, failing that, init) container name.
func (p *Pod) Container(name string) *ContainerStatus {
	for _, list := range [][]ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// Running reports whether the container runs (not merely exists).
func (c *ContainerStatus) Running() bool { return c != nil && c.State.Running != nil }

var (
	criOnce sync.Once
	criConn *grpc.ClientConn
	criErr  error
)

// cri is a client of the test environment's crishim, to look at what the
// kubelet made of its pods and to clean up behind a stopped kubelet.
func cri() (runtime.RuntimeServiceClient, error) {
	criOnce.Do(func() {
		c, err := env.Crishim()
		if err != nil {
			criErr = err
			return
		}
		criConn, criErr = testenv.Dial(c.Socket)
	})
	if criErr != nil {
		return nil, criErr
	}
	return runtime.NewRuntimeServiceClient(criConn), nil
}

// removeAllPodsAt stops and removes every pod sandbox of the CRI runtime
// serving socket, as the kubelet's garbage collection eventually would.
func removeAllPodsAt(socket string) error {
	conn, err := testenv.Dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	return removePodsVia(runtime.NewRuntimeServiceClient(conn))
}

func removePodsVia(rt runtime.RuntimeServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("ListPodSandbox: %w", err)
	}
	for _, p := range list.Items {
		// Each pod gets its own bound: a hundred pods on a loaded machine
		// may take longer together than any one may alone.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.Id})
		if err == nil {
			_, err = rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.Id})
		}
		cancel()
		// The kubelet's garbage collection may have removed it since the list.
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("stop and remove pod %s: %w", p.Id, err)
		}
	}
	return nil
}

// waitRuntimeStopped polls the CRI runtime serving socket until it has no
// running container and no ready sandbox.
func waitRuntimeStopped(socket string, timeout time.Duration) error {
	conn, err := testenv.Dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	return testenv.Poll(timeout, 100*time.Millisecond, "no running container and no ready sandbox", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctrs, err := rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{
			State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING}}})
		if err != nil {
			return false, err
		}
		sbs, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
			State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}}})
		if err != nil {
			return false, err
		}
		return len(ctrs.Containers) == 0 && len(sbs.Items) == 0, fmt.Errorf("%d running containers, %d ready sandboxes", len(ctrs.Containers), len(sbs.Items))
	})
}

// criContainer finds crishim's view of a container by the kubelet's
// container ID ("containerd://<id>" or the bare ID).
func criContainer(ctx context.Context, kubeletID string) (*runtime.ContainerStatus, error) {
	rt, err := cri()
	if err != nil {
		return nil, err
	}
	id := kubeletID
	for i := 0; i+3 <= len(id); i++ {
		if id[i:i+3] == "://" {
			id = id[i+3:]
			break
		}
	}
	resp, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}
