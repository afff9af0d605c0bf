//go:build linux

package stack

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
)

// Leaks lists what pods and containers left behind: tasks, containers and
// container snapshots in containerd namespace ns, mounts under dir (netns
// and shm bind mounts, root filesystems), and network's IP allocations,
// bridge ports (veths) and nat rules. Only meaningful when no pod exists.
func Leaks(c *Containerd, ns string, network *Network, dir string) ([]string, error) {
	var leaks []string
	client, err := c.Client(ns)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	ctrs, err := client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs {
		labels, _ := c.Labels(ctx)
		leaks = append(leaks, fmt.Sprintf("containerd container %s (labels %v)", c.ID(), labels))
	}
	tasks, err := client.TaskService().List(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	for _, t := range tasks.Tasks {
		leaks = append(leaks, fmt.Sprintf("containerd task %s (pid %d)", t.ID, t.Pid))
	}
	// Committed snapshots are image layers and stay; active ones are
	// container root filesystems.
	sn := client.SnapshotService("overlayfs")
	err = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive {
			leaks = append(leaks, fmt.Sprintf("active snapshot %s", info.Name))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk snapshots: %w", err)
	}
	mounts, err := MountsUnder(dir)
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		leaks = append(leaks, "mount "+m)
	}
	ips, err := network.IPAllocations()
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		leaks = append(leaks, "host-local IP allocation "+ip)
	}
	ports, err := network.BridgePorts()
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		leaks = append(leaks, "interface on the test bridge "+p)
	}
	rules, err := network.NATRules()
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		leaks = append(leaks, "nat rule "+r)
	}
	return leaks, nil
}
