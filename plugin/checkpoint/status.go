package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StatusConfigMap is the ConfigMap, in the checkpointer's namespace, where
// each node's checkpointer publishes its NodeStatus under the node's name.
const StatusConfigMap = "pod-checkpointer-status"

// NodeStatus is what one node's checkpointer last published.
type NodeStatus struct {
	Node string `json:"node"`
	// Pod is the checkpointer that wrote it: the DaemonSet pod, or the
	// mirror-less static copy named after it while the DaemonSet pod is away.
	Pod         string             `json:"pod"`
	Updated     time.Time          `json:"updated"`
	Checkpoints []CheckpointStatus `json:"checkpoints"`
	// Written is when the API server stored this report, by its own clock;
	// zero when the writer did not use StatusManager.
	Written time.Time `json:"-"`
}

// StatusManager is the field manager of node's report, so the API server's
// managedFields record when it wrote each node's entry by its own clock.
func StatusManager(node string) string { return "pod-checkpointer/" + node }

// CheckpointStatus is the state of one checkpoint.
type CheckpointStatus struct {
	Parent string `json:"parent"` // parent pod name
	State
}

// Checkpoint is the status of parent's checkpoint, if the node reported one.
func (st NodeStatus) Checkpoint(parent string) (CheckpointStatus, bool) {
	for _, cp := range st.Checkpoints {
		if cp.Parent == parent {
			return cp, true
		}
	}
	return CheckpointStatus{}, false
}

// Phase is the phase of parent's checkpoint: PhaseNone when it has none.
func (st NodeStatus) Phase(parent string) Phase {
	if cp, ok := st.Checkpoint(parent); ok {
		return cp.Phase
	}
	return PhaseNone
}

// HasInactive reports whether the node holds an inactive checkpoint of
// parent: a copy ready to take over, not serving. An empty parent has none.
func (st NodeStatus) HasInactive(parent string) bool {
	return parent != "" && st.Phase(parent) == PhaseInactive
}

// ErrNoStatus means no checkpointer has reported for the node yet.
var ErrNoStatus = errors.New("no pod-checkpointer status for this node yet")

// ReadNodeStatus returns what the checkpointer on node last published. Pass
// the ConfigMaps of the checkpointer's namespace, for example
// client.CoreV1().ConfigMaps("kube-system") of a kubernetes.Interface. It
// wraps ErrNoStatus when that node has not reported.
func ReadNodeStatus(ctx context.Context, configMaps ConfigMapGetter, node string) (NodeStatus, error) {
	cm, err := configMaps.Get(ctx, StatusConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return NodeStatus{}, fmt.Errorf("ConfigMap %s does not exist, so the pod-checkpointer is not installed: %w", StatusConfigMap, ErrNoStatus)
	}
	if err != nil {
		return NodeStatus{}, fmt.Errorf("cannot read ConfigMap %s: %w", StatusConfigMap, err)
	}
	raw, ok := cm.Data[node]
	if !ok {
		return NodeStatus{}, fmt.Errorf("node %s: %w", node, ErrNoStatus)
	}
	var st NodeStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return NodeStatus{}, fmt.Errorf("the pod-checkpointer status of node %s is not valid JSON: %w", node, err)
	}
	for _, m := range cm.ManagedFields {
		if m.Manager == StatusManager(node) && m.Time != nil {
			st.Written = m.Time.Time
		}
	}
	return st, nil
}

// ConfigMapGetter reads a ConfigMap; client-go's typed ConfigMaps client satisfies it.
type ConfigMapGetter interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.ConfigMap, error)
}
