#!/usr/bin/env bash
# demo.sh: the main job on the embedded defaults. It boots an HA kind cluster
# (3 control-plane nodes + 1 worker) from the local images, pivots it with
# `kubectl selfhost bootstrap`, and proves it with `kubectl selfhost verify`.
# The cluster stays up afterwards; rerunning resumes on the same cluster.
#
# Environment: DEMO_CLUSTER (default selfhost-demo), E2E_NODE_IMAGE.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIND=$ROOT/bin/kind
NAME=${DEMO_CLUSTER:-selfhost-demo}
NODE_IMAGE=${E2E_NODE_IMAGE:-kindest/node:v1.37.2}
KUBECONFIG_FILE=$ROOT/_output/$NAME.kubeconfig
mkdir -p "$ROOT/_output"

say() { printf '\n==> %s\n' "$*"; }

# IMG_FLANNEL=..., from internal/images: the names the manifests use.
eval "$(cd "$ROOT" && go run ./hack/images/names)"

if "$KIND" get clusters 2>/dev/null | grep -qx "$NAME"; then
  say "cluster $NAME exists; reusing it"
  "$KIND" get kubeconfig --name "$NAME" >"$KUBECONFIG_FILE"
else
  say "creating HA kind cluster $NAME ($NODE_IMAGE)"
  "$KIND" create cluster --name "$NAME" --config "$ROOT/e2e/kind-ha.yaml" --image "$NODE_IMAGE" --kubeconfig "$KUBECONFIG_FILE"
fi

say "loading the add-on, checkpointer and tool images"
"$KIND" load docker-image --name "$NAME" "$IMG_FLANNEL" "$IMG_FLANNELCNI" "$IMG_METRICSSERVER" "$IMG_CHECKPOINTER" docker.io/library/busybox:1.36

say "kubectl selfhost bootstrap"
"$ROOT/bin/kubectl-selfhost" bootstrap --kubeconfig "$KUBECONFIG_FILE" --metrics-kubelet-insecure-tls

say "kubectl selfhost verify"
"$ROOT/bin/kubectl-selfhost" verify --kubeconfig "$KUBECONFIG_FILE"

say "done: export KUBECONFIG=$KUBECONFIG_FILE; delete with: bin/kind delete cluster --name $NAME"
