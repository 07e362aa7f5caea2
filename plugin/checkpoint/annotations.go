package checkpoint

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Annotations of the contract. A parent asks to be checkpointed with
// CheckpointAnnotation: "true"; every checkpoint carries CheckpointOfAnnotation
// set to the name of its parent pod.
const (
	CheckpointAnnotation   = "checkpointer.selfhost.dev/checkpoint"
	CheckpointOfAnnotation = "checkpointer.selfhost.dev/checkpoint-of"
	// OwnerAnnotation keeps the parent's controller, Kind/name, on its
	// checkpoint (which has no owner references) to recognise a successor.
	OwnerAnnotation = "checkpointer.selfhost.dev/owner"
	// ArgsAnnotation on a parent lists, space-separated, arguments that its
	// checkpoint appends to its first container, with the probes' host
	// cleared so that they reach the pod's own address. The API server sets
	// "--bind-address=$(HOST_IP)": its checkpoint then serves the node's
	// address alone, and 127.0.0.1 reaches only the parent (see doc.go).
	ArgsAnnotation = "checkpointer.selfhost.dev/checkpoint-args"
	// ParentCreatedAnnotation keeps the parent's creation time (RFC 3339) on
	// its checkpoint: of two checkpoints of one owner, the newer parent's wins.
	ParentCreatedAnnotation = "checkpointer.selfhost.dev/parent-created"
	// TokenVolumeAnnotation on a parent names a projected volume whose
	// service-account token its checkpoint keeps: the checkpointer writes a
	// TokenRequest token of the pod's service account that lives for days,
	// not forever, and renews it at half-life while the API is up. Every
	// other projected token dies with the API, and its volume is dropped.
	TokenVolumeAnnotation = "checkpointer.selfhost.dev/token-volume"

	// Bootkube's names, accepted so that users can migrate.
	BootkubeCheckpointAnnotation   = "checkpointer.alpha.coreos.com/checkpoint"
	BootkubeCheckpointOfAnnotation = "checkpointer.alpha.coreos.com/checkpoint-of"
)

// ParentCreated is when a checkpoint's parent was created; zero when the
// checkpoint does not say (bootkube's, or one written before it did).
func ParentCreated(checkpoint *corev1.Pod) time.Time {
	t, err := time.Parse(time.RFC3339, checkpoint.Annotations[ParentCreatedAnnotation])
	if err != nil {
		return time.Time{}
	}
	return t
}

// Set by the kubelet on static pods and their mirror pods.
const (
	ConfigSourceAnnotation = "kubernetes.io/config.source"
	ConfigMirrorAnnotation = "kubernetes.io/config.mirror"
)

// WantsCheckpoint reports whether a pod asks to be checkpointed. Static pods
// and checkpoints never do: a checkpoint of a checkpoint would outlive its
// parent.
func WantsCheckpoint(pod *corev1.Pod) bool {
	a := pod.Annotations
	if a[CheckpointAnnotation] != "true" && a[BootkubeCheckpointAnnotation] != "true" {
		return false
	}
	if _, mirror := a[ConfigMirrorAnnotation]; mirror {
		return false
	}
	return a[ConfigSourceAnnotation] != "file" && CheckpointOf(pod) == ""
}

// CheckpointOf returns the parent pod name of a checkpoint, or "" when the pod
// is not a checkpoint.
func CheckpointOf(pod *corev1.Pod) string {
	return ParentName(pod.Annotations)
}

// ParentName is CheckpointOf for a pod known only by its annotations, as the
// container runtime reports them.
func ParentName(a map[string]string) string {
	if p := a[CheckpointOfAnnotation]; p != "" {
		return p
	}
	return a[BootkubeCheckpointOfAnnotation]
}

// IsStaticMirror reports whether a pod is the mirror of a static pod that an
// administrator put on the node (kubeadm's control plane, say), not of a
// checkpoint.
func IsStaticMirror(pod *corev1.Pod) bool {
	_, mirror := pod.Annotations[ConfigMirrorAnnotation]
	return mirror && CheckpointOf(pod) == ""
}

// Owner is the pod's controller as Kind/name, or its checkpoint's
// OwnerAnnotation; "" for a pod with no controller.
func Owner(pod *corev1.Pod) string {
	if pod == nil {
		return ""
	}
	for _, o := range pod.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return o.Kind + "/" + o.Name
		}
	}
	return pod.Annotations[OwnerAnnotation]
}
