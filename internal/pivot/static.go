package pivot

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// shareStaticPorts rewrites a node's static control-plane pods to use
// --permit-port-sharing, so the self-hosted pods can bind beside them. All
// of them go in one agent run, so the kubelet restarts them in one pass.
type shareStaticPorts struct {
	node       string
	components []string
}

func (a *shareStaticPorts) Name() string {
	return fmt.Sprintf("Letting static %s on %s share their ports", strings.Join(a.components, ", "), a.node)
}

// pending maps each component that does not share its port yet to its
// mirror pod. A component with no mirror pod and no workload yet maps to
// nil: a swap cut short left its new manifest staged, to be put back.
func (a *shareStaticPorts) pending(ctx context.Context, c *Context) (map[string]*corev1.Pod, error) {
	out := map[string]*corev1.Pod{}
	for _, comp := range a.components {
		m, err := MirrorPod(ctx, c.Client, comp, a.node)
		switch {
		case err != nil:
			return nil, err
		case m == nil && !(&createWorkload{component: comp}).exists(ctx, c):
			out[comp] = nil
		case m != nil && !SharesPort(m):
			out[comp] = m
		}
	}
	return out, nil
}

func (a *shareStaticPorts) Done(ctx context.Context, c *Context) (bool, error) {
	p, err := a.pending(ctx, c)
	return err == nil && len(p) == 0, err
}

func (a *shareStaticPorts) Execute(ctx context.Context, c *Context) error {
	pending, err := a.pending(ctx, c)
	if err != nil || len(pending) == 0 {
		return err
	}
	job := agentJob{Node: a.node, Purpose: "share-ports", Payload: map[string]string{}}
	var swaps []staticSwap
	for _, comp := range a.components {
		m, ok := pending[comp]
		if !ok || m == nil {
			continue
		}
		static, err := PortSharingStatic(comp, m)
		if err != nil {
			return err
		}
		manifest, err := encodeYAML(static)
		if err != nil {
			return err
		}
		w := staticSwap{file: comp + ".yaml", content: manifest, oldPod: m.Annotations[configHashAnnotation]}
		if comp == "kube-apiserver" {
			w.apiServerPort, job.HostPID = apiServerPort(m), true
		}
		job.Payload[w.file] = manifest
		swaps = append(swaps, w)
	}
	job.Script = swapStaticScript(swaps) // with no swap, it only puts back what was staged
	if _, err := runAgent(ctx, c, job); err != nil {
		return err
	}
	for _, comp := range a.components {
		old, ok := pending[comp]
		if !ok {
			continue
		}
		if err := awaitSharing(ctx, c, comp, a.node, old); err != nil {
			return err
		}
	}
	return waitAPIHealthy(ctx, c)
}

// awaitSharing waits for the mirror pod of comp on node to share its port
// and be Ready. While the mirror pod of old, which the swap replaced, is
// still there, it is deleted every pokeInterval.
func awaitSharing(ctx context.Context, c *Context, comp, node string, old *corev1.Pod) error {
	c.Waiting("the kubelet on %s to restart static %s with port sharing, Ready", node, comp)
	var poked time.Time
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		m, err := MirrorPod(ctx, c.Client, comp, node)
		if err == nil && m != nil && old != nil && isMirrorOf(m, old) && time.Since(poked) > pokeInterval {
			poked = time.Now()
			pokeKubelet(ctx, c, m)
		}
		return err == nil && m != nil && SharesPort(m) && kube.PodReady(m), nil
	})
	if err != nil {
		return fmt.Errorf("static %s on %s did not come back Ready with port sharing: %w", comp, node, err)
	}
	return nil
}

// pokeInterval is between deletions of one stale mirror pod.
const pokeInterval = 5 * time.Second

// isMirrorOf reports whether mirror pod m still stands for the static pod
// that old mirrored, which the swap replaced.
func isMirrorOf(m, old *corev1.Pod) bool {
	h := old.Annotations[configHashAnnotation]
	return h != "" && m.Annotations[configHashAnnotation] == h
}

// pokeKubelet deletes a stale mirror pod. A kubelet that could not replace
// it while its own API server was down retries only at its next sync of the
// static pod, up to 90 s later; the deletion makes it sync now.
func pokeKubelet(ctx context.Context, c *Context, stale *corev1.Pod) {
	err := c.Client.CoreV1().Pods(kube.Namespace).Delete(ctx, stale.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &stale.UID}})
	if err == nil {
		c.Waiting("the kubelet on %s to replace the stale mirror pod %s, deleted to make it sync", stale.Spec.NodeName, stale.Name)
	}
}

// configHashAnnotation on a mirror pod is its static pod's UID.
const configHashAnnotation = "kubernetes.io/config.hash"

// pollInterval is between reads of what a step waits for.
const pollInterval = 500 * time.Millisecond

// removeStatic moves one node's static manifest into the backup directory,
// then waits for its mirror pod to go and the API to stay healthy.
type removeStatic struct{ component, node string }

func (a *removeStatic) Name() string {
	return fmt.Sprintf("Removing static %s from %s", a.component, a.node)
}

func (a *removeStatic) Done(ctx context.Context, c *Context) (bool, error) {
	m, err := MirrorPod(ctx, c.Client, a.component, a.node)
	return err == nil && m == nil, err
}

func (a *removeStatic) Execute(ctx context.Context, c *Context) error {
	file := a.component + ".yaml"
	if _, err := runAgent(ctx, c, agentJob{Node: a.node, Purpose: "remove-" + a.component, Script: removeStaticScript(file)}); err != nil {
		return err
	}
	c.Waiting("the mirror pod of %s on %s to vanish", a.component, a.node)
	if err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		m, err := MirrorPod(ctx, c.Client, a.component, a.node)
		return err == nil && m == nil, nil
	}); err != nil {
		return fmt.Errorf("the mirror pod of %s on %s is still there: %w", a.component, a.node, err)
	}
	return waitAPIHealthy(ctx, c)
}
