package checkpointer

import (
	"context"
	"fmt"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
)

// LocalPod is a pod sandbox that the container runtime holds on this node.
type LocalPod struct {
	Namespace, Name, UID string
	Ready                bool // the sandbox is ready
	Annotations          map[string]string
	// Containers holds the newest attempt of each container, by name.
	Containers map[string]LocalContainer
}

// LocalContainer is the newest attempt of one container.
type LocalContainer struct {
	ID        string // the runtime's, as in a pod status's containerID after "<runtime>://"
	Running   bool
	CreatedAt time.Time
}

// Runtime reports what runs on this node. It is read from the container
// runtime and never from the kubelet, whose API needs the API server.
type Runtime interface {
	LocalPods(ctx context.Context) ([]LocalPod, error)
}

// CRI reads local pods through the CRI v1 runtime service.
type CRI struct {
	Service internalapi.RuntimeService
}

// DialCRI connects to a CRI v1 endpoint such as unix:///run/containerd/containerd.sock.
func DialCRI(ctx context.Context, endpoint string, timeout time.Duration) (*CRI, error) {
	rs, err := remote.NewRemoteRuntimeServiceBuilder().
		WithEndpoint(endpoint).
		WithConnectionTimeout(timeout).
		WithTracerProvider(nil).
		Build(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the container runtime at %s: %w", endpoint, err)
	}
	return &CRI{Service: rs}, nil
}

// LocalPods lists every sandbox with the newest attempt of each of its containers.
func (c *CRI) LocalPods(ctx context.Context) ([]LocalPod, error) {
	sandboxes, err := c.Service.ListPodSandbox(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot list pod sandboxes from the container runtime: %w", err)
	}
	containers, err := c.Service.ListContainers(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot list containers from the container runtime: %w", err)
	}
	type attempt struct {
		n uint32
		c LocalContainer
	}
	bySandbox := map[string]map[string]attempt{}
	for _, ct := range containers {
		if ct.Metadata == nil {
			continue
		}
		m := bySandbox[ct.PodSandboxId]
		if m == nil {
			m = map[string]attempt{}
			bySandbox[ct.PodSandboxId] = m
		}
		a := attempt{n: ct.Metadata.Attempt, c: LocalContainer{
			ID:        ct.Id,
			Running:   ct.State == runtimeapi.ContainerState_CONTAINER_RUNNING,
			CreatedAt: time.Unix(0, ct.CreatedAt),
		}}
		if old, ok := m[ct.Metadata.Name]; ok && (old.n > a.n || (old.n == a.n && old.c.CreatedAt.After(a.c.CreatedAt))) {
			continue
		}
		m[ct.Metadata.Name] = a
	}
	pods := make([]LocalPod, 0, len(sandboxes))
	for _, s := range sandboxes {
		if s.Metadata == nil {
			continue
		}
		cs := make(map[string]LocalContainer, len(bySandbox[s.Id]))
		for name, a := range bySandbox[s.Id] {
			cs[name] = a.c
		}
		pods = append(pods, LocalPod{
			Namespace:   s.Metadata.Namespace,
			Name:        s.Metadata.Name,
			UID:         s.Metadata.Uid,
			Ready:       s.State == runtimeapi.PodSandboxState_SANDBOX_READY,
			Annotations: s.Annotations,
			Containers:  cs,
		})
	}
	return pods, nil
}

// runningHere reports whether a ready sandbox of the pod runs every one of
// containers, each for at least minStable and, unless readyIDs is nil, as the
// container ID that readyIDs gives it. A container that crash-loops in a live
// sandbox restarts as a new attempt, so it never passes minStable. An empty
// uid matches by namespace and name only.
func runningHere(local []LocalPod, namespace, name, uid string, containers []string, readyIDs map[string]string, now time.Time, minStable time.Duration) bool {
	for _, p := range local {
		if p.Namespace != namespace || p.Name != name || (uid != "" && p.UID != uid) || !p.Ready {
			continue
		}
		if len(containers) == 0 && len(p.Containers) == 0 {
			continue
		}
		ok := true
		for _, c := range containers {
			lc, found := p.Containers[c]
			if !found || !lc.Running || now.Sub(lc.CreatedAt) < minStable ||
				(readyIDs != nil && (readyIDs[c] == "" || readyIDs[c] != lc.ID)) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
