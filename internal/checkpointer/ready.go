package checkpointer

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// parentReady: with the API up, the parent (matched by UID) runs here per the
// runtime and the API reports those very containers Ready. With the API down,
// the parent must have run every container for MinStable and, where Probe can
// tell, pass its readiness probes: a parent shutting down still runs.
func (r *Reconciler) parentReady(snap *snapshot, key string) bool {
	if parent := snap.byKey[key]; parent != nil {
		return r.readyInAPI(snap, parent)
	}
	namespace, name, _ := strings.Cut(key, "/")
	var spec *corev1.Pod
	if od := snap.onDisk[key]; od != nil {
		spec = od.Pod
	}
	return runningHere(snap.local, namespace, name, "", containerNames(spec), nil, snap.now, r.MinStable) &&
		(r.Probe == nil || r.Probe(spec))
}

// readyInAPI reports whether a pod that the API lists runs here and the API
// reports the very containers that run Ready.
func (r *Reconciler) readyInAPI(snap *snapshot, p *corev1.Pod) bool {
	return kube.PodReady(p) && runningHere(snap.local, p.Namespace, p.Name, string(p.UID), containerNames(p), readyIDs(p), snap.now, r.MinStable)
}

// successor reports whether the API lists a pod of the checkpoint's
// controller in its parent's place on this node, whether one is Ready here,
// and whether a Ready one has its own inactive checkpoint on disk.
func (r *Reconciler) successor(snap *snapshot, cp *corev1.Pod) (inAPI, ready, checkpointed bool) {
	owner := checkpoint.Owner(cp)
	if owner == "" {
		return false, false, false
	}
	for i := range snap.parents {
		p := &snap.parents[i]
		if p.Namespace != cp.Namespace || p.Name == checkpoint.CheckpointOf(cp) || checkpoint.Owner(p) != owner {
			continue
		}
		inAPI = true
		if r.readyInAPI(snap, p) {
			ready = true
			if od := snap.onDisk[Key(p.Namespace, p.Name)]; od != nil && od.Inactive {
				checkpointed = true
			}
		}
	}
	return inAPI, ready, checkpointed
}

// ownerWantsNode asks the API whether the checkpoint's controller still
// wants a pod on this node. When the API cannot tell, the answer is yes: a
// checkpoint kept a while too long costs little, one removed too early can
// cost the node's API server.
func (r *Reconciler) ownerWantsNode(ctx context.Context, key string, cp *corev1.Pod) bool {
	owner := checkpoint.Owner(cp)
	if owner == "" {
		return false
	}
	wants, err := r.API.OwnerWantsNode(ctx, owner)
	logged := key + " owner"
	if err != nil {
		r.count(errAPI)
		if r.lastErr[logged] != err.Error() {
			r.lastErr[logged] = err.Error()
			r.Log.Warn("cannot tell whether the owner still wants this node; keeping the checkpoint", "checkpoint", key, "owner", owner, "err", err)
		}
		return true
	}
	delete(r.lastErr, logged)
	return wants
}

// superseded reports whether the disk holds a checkpoint of a newer parent
// of the same controller as cp: then cp must not run beside it.
func superseded(snap *snapshot, cp *corev1.Pod) bool {
	owner := checkpoint.Owner(cp)
	if owner == "" {
		return false
	}
	created := checkpoint.ParentCreated(cp)
	for _, od := range snap.onDisk {
		other := od.Pod
		if other == nil || other.Namespace != cp.Namespace || checkpoint.CheckpointOf(other) == checkpoint.CheckpointOf(cp) || checkpoint.Owner(other) != owner {
			continue
		}
		if checkpoint.ParentCreated(other).After(created) {
			return true
		}
	}
	return false
}

// readyIDs maps each container that the API reports ready to its runtime's
// container ID. After a reboot the API keeps the last boot's Ready until the
// kubelet reports again, and a parent that has not served yet would otherwise
// count as Ready and take the node back from its checkpoint.
func readyIDs(p *corev1.Pod) map[string]string {
	ids := map[string]string{}
	for _, st := range p.Status.ContainerStatuses {
		if _, id, ok := strings.Cut(st.ContainerID, "://"); ok && st.Ready {
			ids[st.Name] = id
		}
	}
	return ids
}

func containerNames(p *corev1.Pod) []string {
	if p == nil {
		return nil
	}
	names := make([]string, 0, len(p.Spec.Containers))
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}
