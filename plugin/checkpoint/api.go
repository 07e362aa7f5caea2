package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
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
}

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
	return st, nil
}

// API is what the checkpointer needs from the API server.
type API interface {
	// ParentPods lists the pods on this node that ask for a checkpoint. An
	// error means the API is down, as far as the state machine is concerned.
	ParentPods(ctx context.Context) ([]corev1.Pod, error)
	// VolumeData returns the content of a Secret or ConfigMap; found is false
	// when it does not exist.
	VolumeData(ctx context.Context, kind, name string) (data map[string][]byte, found bool, err error)
	// DaemonSetGone reports whether the checkpointer's DaemonSet is deleted or being deleted.
	DaemonSetGone(ctx context.Context) (bool, error)
	PublishStatus(ctx context.Context, st NodeStatus) error
}

// The clients below are the few methods of client-go's typed clients that
// the checkpointer calls. The typed clients of a kubernetes.Interface satisfy
// them, and so does the small REST client in restclient.go: linking the full
// clientset would double the binary.
type (
	PodLister interface {
		List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	}
	SecretGetter interface {
		Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
	}
	ConfigMapGetter interface {
		Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.ConfigMap, error)
	}
	ConfigMapClient interface {
		ConfigMapGetter
		Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.ConfigMap, error)
	}
	DaemonSetGetter interface {
		Get(ctx context.Context, name string, opts metav1.GetOptions) (*appsv1.DaemonSet, error)
	}
)

// ClientAPI implements API within one namespace.
type ClientAPI struct {
	Pods       PodLister
	Secrets    SecretGetter
	ConfigMaps ConfigMapClient
	DaemonSets DaemonSetGetter
	Namespace  string
	Node       string
	DaemonSet  string
}

func (a ClientAPI) ParentPods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := a.Pods.List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", a.Node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list pods of node %s: %w", a.Node, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Spec.NodeName == a.Node && WantsCheckpoint(&p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (a ClientAPI) VolumeData(ctx context.Context, kind, name string) (map[string][]byte, bool, error) {
	switch kind {
	case "Secret":
		s, err := a.Secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("cannot read secret %s/%s: %w", a.Namespace, name, err)
		}
		return s.Data, true, nil
	case "ConfigMap":
		c, err := a.ConfigMaps.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("cannot read configMap %s/%s: %w", a.Namespace, name, err)
		}
		data := make(map[string][]byte, len(c.Data)+len(c.BinaryData))
		for k, v := range c.Data {
			data[k] = []byte(v)
		}
		for k, v := range c.BinaryData {
			data[k] = v
		}
		return data, true, nil
	}
	return nil, false, fmt.Errorf("cannot copy a volume of kind %s", kind)
}

func (a ClientAPI) DaemonSetGone(ctx context.Context) (bool, error) {
	ds, err := a.DaemonSets.Get(ctx, a.DaemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read DaemonSet %s/%s: %w", a.Namespace, a.DaemonSet, err)
	}
	return ds.DeletionTimestamp != nil, nil
}

// PublishStatus merge-patches this node's key only, so nodes never conflict.
func (a ClientAPI) PublishStatus(ctx context.Context, st NodeStatus) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]string{a.Node: string(raw)}})
	if err != nil {
		return err
	}
	_, err = a.ConfigMaps.Patch(ctx, StatusConfigMap, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "pod-checkpointer"})
	if err != nil {
		return fmt.Errorf("cannot publish status to ConfigMap %s/%s: %w", a.Namespace, StatusConfigMap, err)
	}
	return nil
}

// ClearStatus removes this node's entry from the status ConfigMap.
func (a ClientAPI) ClearStatus(ctx context.Context) error {
	patch, err := json.Marshal(map[string]any{"data": map[string]any{a.Node: nil}})
	if err != nil {
		return err
	}
	_, err = a.ConfigMaps.Patch(ctx, StatusConfigMap, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "pod-checkpointer"})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cannot clear status in ConfigMap %s/%s: %w", a.Namespace, StatusConfigMap, err)
	}
	return nil
}
