// Package sandbox runs pod sandboxes: one pause container per pod that owns
// the pod's network, IPC and UTS namespaces (PID too when the pod shares it).
package sandbox

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/cgroup"
	"github.com/crishim/crishim/internal/events"
	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/internal/journal"
	"github.com/crishim/crishim/internal/names"
	"github.com/crishim/crishim/internal/network"
	"github.com/crishim/crishim/internal/oomscore"
	"github.com/crishim/crishim/internal/stats"
	"github.com/crishim/crishim/internal/undo"
	"github.com/crishim/crishim/lifecycle"
)

// Config is what the sandbox manager needs from crishim's configuration.
type Config struct {
	Root         string // per-pod persistent files under Root/sandboxes/<id>
	State        string // per-pod volatile files (shm mounts) under State/sandboxes/<id>
	SandboxImage string // "" selects the embedded pause image
	CgroupDriver string // cgroupfs or systemd
	Snapshotter  string
	Runtime      string // containerd shim, e.g. io.containerd.runc.v2
}

// Sandbox is the view of a pod sandbox that container creation needs. Get
// returns a copy; changing it changes nothing in the manager.
type Sandbox struct {
	ID string
	// Name is the pod's unique key, name_namespace_uid_attempt.
	Name   string
	Config *runtime.PodSandboxConfig
	// RuntimeHandler is the CRI runtime handler the pod was created with.
	RuntimeHandler string
	// NetNSPath is empty for host-network pods.
	NetNSPath string
	// PausePID is the pause process's host PID, for joining its namespaces.
	PausePID uint32
	// Dir holds hostname, hosts and resolv.conf. ShmPath is the host
	// directory to bind-mount as the pod's /dev/shm: a per-pod tmpfs, or
	// the host's /dev/shm for host IPC pods.
	Dir     string
	ShmPath string
	// Ready is false once the sandbox is stopped or its pause exited.
	Ready bool
	// IP and AdditionalIPs are the pod's addresses (empty for host network).
	IP            string
	AdditionalIPs []string
	CreatedAt     time.Time
}

// HostnamePath, HostsPath and ResolvPath are the files app containers bind-mount.
func (s *Sandbox) HostnamePath() string { return s.Dir + "/hostname" }
func (s *Sandbox) HostsPath() string    { return s.Dir + "/hosts" }
func (s *Sandbox) ResolvPath() string   { return s.Dir + "/resolv.conf" }

// sandboxImages is what the manager needs from the image service; tests
// substitute their own.
type sandboxImages interface {
	EnsureSandboxImage(ctx context.Context, ref string) (*image.Local, error)
}

// usageSealer is the optional part of the image service that learns when
// a snapshot has become a read-only root, whose usage then stays as it is.
type usageSealer interface {
	SealUsage(key string)
}

// sealRootUsage tells the image service that pod id's pause root, always
// read-only, has its mount points made: its task exists.
func (m *Manager) sealRootUsage(id string) {
	if s, ok := m.images.(usageSealer); ok {
		s.SealUsage(id)
	}
}

// Manager owns every pod sandbox in crishim's containerd namespace.
type Manager struct {
	client *containerd.Client
	images sandboxImages
	net    *network.Manager
	cfg    Config
	// ns is the containerd namespace, for contexts made from scratch.
	ns       string
	exits    *lifecycle.Exits
	oomFloor int

	// cpu keeps each pod's previous CPU sample for rates.
	cpu *stats.Rates
	// cgroupV2 tells how to read the pause containers' cgroups.
	cgroupV2 bool
	// events receives lifecycle transitions; nil until SetPublisher.
	events events.Publisher

	// store holds the pods Run completed or Recover found.
	store *store
	// names maps a pod's name key to its ID, from the moment Run reserves
	// it until Remove releases it, and answers retried Runs (reserve.go).
	names *names.Registry
	// journal lists the Runs in progress, for Recover to undo (halfmade.go).
	journal *journal.Journal
}

// pod is the manager's record of one sandbox. Fields above mu-guarded ones
// never change after the pod is published.
type pod struct {
	id        string
	name      string
	cfg       *runtime.PodSandboxConfig
	handler   string
	netnsPath string
	dir       string
	stateDir  string
	shmPath   string
	image     string
	createdAt time.Time

	// op serialises Stop, Remove and the recovery re-check of this pod.
	op sync.Mutex

	// mu guards the rest, the pod's status.
	mu sync.Mutex
	// state changes only through the transitions in store.go.
	state podState
	// reason says why a pod is Unknown.
	reason string
	// noRecord is set on a pod whose record could not be read at all: its
	// config is a stand-in and its network namespace is not known.
	noRecord bool
	// superseded is the pod that took this one's place in the store when
	// a re-check completed its recovery; operations go on with that one.
	superseded *pod
	ip         string
	extraIPs   []string
	pid        uint32
	// stopping is set while a Stop runs: the Stop deletes the pause
	// task and reports the pod stopped, not the exit watcher.
	stopping bool
	// exited is set by the exit watcher when the pause task exits.
	exited bool
	// stopReported is set once the pod's STOPPED event has gone out:
	// whichever of the exit watcher and Stop sees the pod stop first
	// reports it, and only that one.
	stopReported bool
	// listed holds the pod as ListPodSandbox reports it in each CRI state
	// (by runtime.PodSandboxState), made on first use and shared, never
	// changed, by every list after: all its fields but the state are fixed
	// when the pod is made. listedWire holds their protobuf encodings,
	// which the server's codec sends instead of marshalling the label and
	// annotation maps again (ListedWire).
	listed     [2]*runtime.PodSandbox
	listedWire [2][]byte
}

// New returns a sandbox manager; Recover must run before it serves requests.
func New(client *containerd.Client, images *image.Service, net *network.Manager, cfg Config) *Manager {
	m := &Manager{
		client:   client,
		net:      net,
		cfg:      cfg,
		oomFloor: oomscore.Own(),
		cpu:      stats.NewRates(),
		cgroupV2: cgroup.V2(),
		store:    newStore(),
		names:    names.New("pod sandbox", createTimeout),
		journal:  journal.New(filepath.Join(cfg.Root, "journal", "sandboxes")),
	}
	if images != nil {
		m.images = images
	}
	if client != nil {
		m.ns = client.DefaultNamespace()
		m.exits = lifecycle.NewExits(client, m.ns)
	}
	return m
}

// Close stops following containerd's task exits.
func (m *Manager) Close() {
	if m.exits != nil {
		m.exits.Close()
	}
}

// withNS makes sure ctx names crishim's containerd namespace: spec
// generation reads it from the context, not from the client.
func (m *Manager) withNS(ctx context.Context) context.Context {
	if _, ok := namespaces.Namespace(ctx); ok || m.ns == "" {
		return ctx
	}
	return namespaces.WithNamespace(ctx, m.ns)
}

// cleanupContext is for undo and teardown work that must finish even when
// the request that started it was cancelled.
func (m *Manager) cleanupContext() (context.Context, context.CancelFunc) {
	return undo.Context(m.ns)
}

func (m *Manager) podDir(id string) string   { return filepath.Join(m.cfg.Root, "sandboxes", id) }
func (m *Manager) stateDir(id string) string { return filepath.Join(m.cfg.State, "sandboxes", id) }

// shmPathFor is where the pod's /dev/shm lives on the host.
func (m *Manager) shmPathFor(id string, cfg *runtime.PodSandboxConfig) string {
	if hostIPC(cfg) {
		return "/dev/shm"
	}
	return filepath.Join(m.stateDir(id), "shm")
}

// ResolveID returns the full ID of the pod that id names, as its full ID or
// a unique prefix of it (see idprefix). The server resolves every ID a
// client sends here, once, so the rest of this package takes full IDs only.
func (m *Manager) ResolveID(id string) (string, error) {
	return m.store.resolve(id)
}

// lookup finds a published pod by its full ID.
func (m *Manager) lookup(id string) (*pod, error) {
	if p, ok := m.store.get(id); ok {
		return p, nil
	}
	return nil, fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
}

// lockPod finds pod id and takes its operation lock, following a pod
// that a completed re-check replaced while the caller waited.
func (m *Manager) lockPod(id string) (*pod, error) {
	for {
		p, err := m.lookup(id)
		if err != nil {
			return nil, err
		}
		p.op.Lock()
		p.mu.Lock()
		next := p.superseded
		p.mu.Unlock()
		if next == nil {
			return p, nil
		}
		p.op.Unlock()
	}
}

// Get returns a copy of the sandbox with full ID id; errdefs.ErrNotFound when absent.
func (m *Manager) Get(id string) (*Sandbox, error) {
	p, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return &Sandbox{
		ID:             p.id,
		Name:           p.name,
		Config:         proto.Clone(p.cfg).(*runtime.PodSandboxConfig),
		RuntimeHandler: p.handler,
		NetNSPath:      p.netnsPath,
		PausePID:       p.pid,
		Dir:            p.dir,
		ShmPath:        p.shmPath,
		Ready:          p.state == stateReady,
		IP:             p.ip,
		AdditionalIPs:  append([]string(nil), p.extraIPs...),
		CreatedAt:      p.createdAt,
	}, nil
}

// Status reports a sandbox; info is filled when verbose.
func (m *Manager) Status(ctx context.Context, id string, verbose bool) (*runtime.PodSandboxStatus, map[string]string, error) {
	p, err := m.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &runtime.PodSandboxStatus{
		Id:             p.id,
		Metadata:       proto.Clone(p.cfg.GetMetadata()).(*runtime.PodSandboxMetadata),
		State:          p.state.cri(),
		CreatedAt:      p.createdAt.UnixNano(),
		Labels:         copyMap(p.cfg.GetLabels()),
		Annotations:    copyMap(p.cfg.GetAnnotations()),
		RuntimeHandler: p.handler,
		Network:        &runtime.PodSandboxNetworkStatus{},
		Linux: &runtime.LinuxPodSandboxStatus{
			Namespaces: &runtime.Namespace{Options: &runtime.NamespaceOption{}},
		},
	}
	// The kubelet reads the IP only from a ready pod; a stopped one has
	// given its address back.
	if p.state != stateStopped {
		st.Network.Ip = p.ip
		for _, ip := range p.extraIPs {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	}
	if o := namespaceOptions(p.cfg); o != nil {
		st.Linux.Namespaces.Options = proto.Clone(o).(*runtime.NamespaceOption)
	}
	if !verbose {
		return st, nil, nil
	}
	info, err := m.verboseInfo(p)
	if err != nil {
		return nil, nil, err
	}
	return st, map[string]string{"info": info}, nil
}

// verboseInfo is the debugging detail crictl inspectp shows. Callers hold p.mu.
func (m *Manager) verboseInfo(p *pod) (string, error) {
	cfgJSON, err := protojson.Marshal(p.cfg)
	if err != nil {
		return "", fmt.Errorf("encode config of sandbox %s: %w", p.id, err)
	}
	info := struct {
		PID            uint32 `json:"pid"`
		NetNSPath      string `json:"netNamespacePath,omitempty"`
		Image          string `json:"image"`
		RuntimeHandler string `json:"runtimeHandler"`
		RuntimeType    string `json:"runtimeType"`
		Dir            string `json:"sandboxDir"`
		ShmPath        string `json:"shmPath"`
		Stopped        bool   `json:"stopped"`
		State          string `json:"state"`
		// RecoveryError says why an Unknown pod's recovery is not
		// complete: CRI has no state for it, and lists it NOTREADY.
		RecoveryError string          `json:"recoveryError,omitempty"`
		Config        json.RawMessage `json:"config"`
	}{
		PID:            p.pid,
		NetNSPath:      p.netnsPath,
		Image:          p.image,
		RuntimeHandler: p.handler,
		RuntimeType:    m.cfg.Runtime,
		Dir:            p.dir,
		ShmPath:        p.shmPath,
		Stopped:        p.state == stateStopped,
		State:          p.state.String(),
		RecoveryError:  p.reason,
		Config:         cfgJSON,
	}
	data, err := json.Marshal(info)
	if err != nil {
		return "", fmt.Errorf("encode info of sandbox %s: %w", p.id, err)
	}
	return string(data), nil
}

// List returns the sandboxes matching filter (nil: all).
func (m *Manager) List(ctx context.Context, filter *runtime.PodSandboxFilter) ([]*runtime.PodSandbox, error) {
	var out []*runtime.PodSandbox
	for _, p := range m.store.all() {
		s := p.listedItem()
		if matches(filter, s) {
			out = append(out, s)
		}
	}
	// In a stable order, so that an unchanged list is answered with the
	// bytes sent before (server/codec.go).
	slices.SortFunc(out, func(a, b *runtime.PodSandbox) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.Id, b.Id))
	})
	return out, nil
}

// listedItem is p as ListPodSandbox reports it now. The kubelet lists
// every second: the item is made once per CRI state and shared, as the
// list is only read (marshalled).
func (p *pod) listedItem() *runtime.PodSandbox {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state.cri()
	if it := p.listed[st]; it != nil {
		return it
	}
	it := &runtime.PodSandbox{
		Id:             p.id,
		Metadata:       p.cfg.GetMetadata(),
		State:          st,
		CreatedAt:      p.createdAt.UnixNano(),
		Labels:         p.cfg.GetLabels(),
		Annotations:    p.cfg.GetAnnotations(),
		RuntimeHandler: p.handler,
	}
	p.listed[st] = it
	// A failure (not expected of a message crishim built) leaves no
	// encoding, and the codec marshals the item itself.
	p.listedWire[st], _ = proto.Marshal(it)
	return it
}

// ListedWire is the protobuf encoding of it, an item of a List result,
// if it is what the store lists for that pod in that state; nil otherwise.
func (m *Manager) ListedWire(it *runtime.PodSandbox) []byte {
	p, ok := m.store.get(it.GetId())
	if !ok {
		return nil
	}
	st := it.GetState()
	if st != runtime.PodSandboxState_SANDBOX_READY && st != runtime.PodSandboxState_SANDBOX_NOTREADY {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listed[st] != it {
		return nil
	}
	return p.listedWire[st]
}

func copyMap(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func (m *Manager) logger(id string) *logrus.Entry {
	return logrus.WithField("pod", id)
}
