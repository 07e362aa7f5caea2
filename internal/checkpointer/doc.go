// Package checkpointer is the pod-checkpointer daemon: it keeps a static-pod
// copy (a checkpoint) of self-hosted control-plane pods on each control-plane
// node, and runs that copy while the real pod (the parent) cannot run, for
// example when every API server pod stopped at once and nothing can recreate
// them. What it decides, and the annotations and status it shares with the
// plugin, are the contract in plugin/checkpoint; this package is the I/O
// around it: CRI, the API, the disk, the lock and the metrics.
//
// # Sources of truth
//
// What runs on the node comes from the container runtime over CRI v1, never
// from the kubelet API, which needs the API server to authorize. A parent counts
// as Ready here when a ready sandbox runs every one of its containers, each for
// at least MinStable (a crash-looping container never does), and, while the
// API is up, the API also reports the pod Ready with those very containers'
// IDs (after a reboot it holds the last boot's Ready until the kubelet
// reports again). While the API is down, a host-network parent must also pass
// its HTTP readiness probes, run from the node (LocalProbe): an API server
// whose pod was deleted still runs for its termination grace period, but
// fails /readyz at once. That /readyz leaves etcd out: with etcd down every
// parent would fail it, and a checkpoint started beside each could not serve
// either. Parents come from the API; checkpoints from the disk.
//
// # Port 6443: one hand-over
//
// A checkpointed API server and its returning parent both listen on 6443
// (both need --permit-port-sharing=true). On the host network a declared
// container port is a host port that the kubelet refuses to give twice, so
// Sanitize drops the ports and turns named probe ports into numbers.
//
// They split the port by address. The parent binds every address; through
// ArgsAnnotation its checkpoint binds only the node's (--bind-address=
// $(HOST_IP)), and the kernel hands a connection to the listener bound to
// its exact address first. So while the checkpoint runs it alone serves the
// node's address, which the load balancer uses, and 127.0.0.1 reaches only
// the parent: the parent's probes name 127.0.0.1, so the kubelet's and
// LocalProbe's verdicts are the parent's own, and each server's loopback
// client reaches itself. Sharing one address instead would let either
// process answer any probe. When the checkpoint stops, the parent takes the
// node's address too.
//
// The checkpoint stops only after the parent has been Ready without a break
// for Grace.HandOver; a parent that flaps restarts that wait instead of
// ping-ponging. Once inactive, a checkpoint starts again only after its
// parent has been down for Grace.Activate.
//
// # Disk
//
//	/etc/kubernetes/inactive-manifests/<ns>-<pod>.json   every checkpoint, 0600 in a 0700 directory
//	/etc/kubernetes/manifests/<ns>-<pod>.json            active ones, where the kubelet runs them
//	/etc/kubernetes/checkpoint-secrets/<ns>/<pod>/<volume>/  secret and configMap copies
//
// Sanitize drops projected service-account token volumes and their mounts,
// the service account, image pull secrets, owner references and scheduling
// fields, and turns secret, configMap and projected secret/configMap volumes
// into hostPath copies, so that NodeRestriction admits the mirror pod. Copies
// honour items and defaultMode, keeping only the owner's bits (0644 → 0600,
// 0400 → 0400); directories are 0700 and belong to the pod's user. It refuses
// pods that read secrets or configMaps through environment variables or mount
// claims. Sanitize is idempotent.
//
// Manifests are written to a dot-named temporary file and renamed; the kubelet
// ignores dot files. A volume copy is swapped in whole through a ..data link,
// as the kubelet's atomic writer does. Every pass first removes what an
// interrupted write left. A flock (--lock-file) lets only one of the DaemonSet
// pod and its own static checkpoint act at a time.
//
// # The checkpointer's own checkpoint and credentials
//
// The checkpointer checkpoints itself and keeps that checkpoint always active;
// the static copy waits on the lock, acts while the DaemonSet pod is away (after
// a reboot, say), and yields as soon as a DaemonSet pod runs again, staying off
// the lock for a few seconds so that the DaemonSet pod gets it. Only the copy
// holding the lock serves /healthz and /metrics. When the
// API reports its DaemonSet gone or being deleted for Grace.Remove, it removes
// every checkpoint and then its own, whose removal stops it.
//
// It authenticates with a long-lived service account token, a Secret of type
// kubernetes.io/service-account-token created with the DaemonSet. Unlike a
// bound token it does not expire and is not bound to a pod, so it works after
// an outage of any length, and the static copy reads it from its volume copy.
// It is revoked by deleting the Secret, and its reach is a namespaced Role:
// list pods, get secrets and configMaps, patch the status ConfigMap, get its
// own and the API server's DaemonSets; and, cluster-wide, get nodes, to tell
// whether a DaemonSet still targets its node. The token file is re-read on every request. The API server
// address comes from the kubelet's kubeconfig, so neither kube-proxy nor
// cluster DNS is needed. Missing credentials count as an API that is down:
// checkpoints on disk still start and stop.
package checkpointer
