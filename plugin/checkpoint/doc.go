// Package checkpoint is the pod-checkpointer's contract: the annotations a
// pod uses to ask for a checkpoint, the pure state machine (Step) that decides
// what happens to each checkpoint, how a parent is turned into a static pod
// (Sanitize, Project), and the status each node publishes (NodeStatus). The
// daemon that acts on it lives in internal/checkpointer; the plugin reads
// the status through this package alone, so it links no CRI, gRPC or
// metrics code. It follows bootkube's checkpointer
// (kubernetes-retired/bootkube, pkg/checkpoint) and fixes where that one failed.
//
// # Contract
//
// A pod asks for a checkpoint with the annotation
// checkpointer.selfhost.dev/checkpoint: "true" (CheckpointAnnotation). A
// checkpoint carries checkpointer.selfhost.dev/checkpoint-of: <parent pod name>
// (CheckpointOfAnnotation). Bootkube's checkpointer.alpha.coreos.com/checkpoint
// and checkpoint-of are accepted too. Only pods in the checkpointer's own
// namespace are checkpointed. A checkpoint also keeps its parent's controller
// (OwnerAnnotation) and creation time (ParentCreatedAnnotation): of two
// checkpoints of one controller on a node, only the newer parent's may run.
//
// # State machine
//
// Step, in state.go, is pure and decides everything:
//
//	none → inactive   parent in the API and Ready here
//	inactive → active parent not Ready here for Grace.Activate
//	active → inactive parent Ready here for Grace.HandOver
//	→ removed         API up and the parent gone from it for Grace.Remove
//
// Nothing is removed while the API is down.
//
// A parent that the API replaced by a pod of the same controller on the same
// node (a DaemonSet rollout, or every API server pod deleted) is not moved
// away: its checkpoint is the last spec that worked here. It activates if the
// successor is not Ready for Grace.Activate (a crash-looping rollout keeps
// the old API server serving) and goes only once the successor has been
// Ready for Grace.HandOver (active) or Grace.Remove (inactive). The
// checkpoint remembers the controller in OwnerAnnotation.
//
// # State through the API
//
// Each node's checkpointer merge-patches its NodeStatus, as JSON, under the
// node's name in the ConfigMap pod-checkpointer-status of its namespace
// (StatusConfigMap), on every change and at least every minute. Read it with
// ReadNodeStatus. It also serves /healthz and Prometheus /metrics
// (pod_checkpointer_checkpoints{state}, pod_checkpointer_transitions_total,
// pod_checkpointer_errors_total{kind}, pod_checkpointer_api_up), and logs one
// structured line per transition.
package checkpoint
