#!/usr/bin/env bash
# build.sh: builds, offline, every image the e2e suite runs, under the upstream
# names of internal/images. Sources are only the Go module proxy, Debian's mirror
# and the module cache (see ../shared/notes/airgap-kind.md for the recipe).
#
# Each image carries the label $LABEL with a hash of its inputs (the step's own
# code, the wrapper module's go.mod/go.sum, build flags, base images) and is
# skipped when an image with that hash is already present.
#
# Usage: hack/images/build.sh            (E2E_NODE_IMAGE names the node image;
#        E2E_UPGRADE_FROM the version whose images and kindest/node the upgrade test starts from)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/hack/images
SRC=$HERE/src
OUT=${E2E_IMAGES_OUT:-$ROOT/_output/images}
LABEL=io.kubectl-selfhost.e2e.inputs
NODE_IMAGE=${E2E_NODE_IMAGE:-kindest/node:v1.37.2}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
KIND_VERSION=v0.33.0
BUSYBOX_IMAGE=docker.io/library/busybox:1.36
AGNHOST_IMAGE=registry.k8s.io/e2e-test-images/agnhost:2.66.1
ENVOY_IMAGE=docker.io/envoyproxy/envoy:v1.36.2
# Internal base images; never leave this machine.
USERLAND_IMAGE=kubectl-selfhost.local/e2e/bookworm-userland:latest
STATIC_IMAGE=kubectl-selfhost.local/e2e/static:latest
PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Host tools, from Debian; as root on Debian they are installed here.
"$ROOT/hack/host-tools.sh" build.sh debootstrap=debootstrap /bin/busybox=busybox-static gcc=gcc /usr/include/stdio.h=libc6-dev
command -v docker >/dev/null || { echo "build.sh: docker is missing; install a Docker engine and start it" >&2; exit 1; }

export GOFLAGS=-mod=mod CGO_ENABLED=0
GO=${GO:-go}
mkdir -p "$OUT/bin" "$OUT/ctx" "$OUT/cache"

# Upstream names (IMG_APISERVER=..., KUBERNETES_VERSION=...), from internal/images.
eval "$(cd "$ROOT" && "$GO" run ./hack/images/names)"
K8S=$KUBERNETES_VERSION
# The version the upgrade scenario starts from: one minor below, built from its
# own wrapper module, src/kubernetes-<minor>.
UPGRADE_FROM=${E2E_UPGRADE_FROM:-v1.36.3}
UPGRADE_SRC=kubernetes-${UPGRADE_FROM%.*}
grep -q "k8s.io/kubernetes $UPGRADE_FROM\$" "$SRC/$UPGRADE_SRC/go.mod" 2>/dev/null \
  || { echo "build.sh: $SRC/$UPGRADE_SRC/go.mod does not require k8s.io/kubernetes $UPGRADE_FROM" >&2; exit 1; }

# Packages of the node (kind's base Dockerfile list, minus storage extras, plus
# Debian's runc and CNI plugins) and of the userland base the workload images share.
NODE_PACKAGES=systemd,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,runc,containernetworking-plugins,e2fsprogs
USERLAND_PACKAGES=bash,ca-certificates,iptables,nftables,conntrack,iproute2,ipset,dnsutils,curl,netcat-openbsd,socat,procps

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# hash_inputs ARG...: sha256 over strings and, for absolute paths, file contents.
hash_inputs() {
  local a
  for a in "$@"; do
    if [[ $a == /* && -e $a ]]; then
      (cd "$a" 2>/dev/null && find . -type f -print0 | sort -z | xargs -0 sha256sum) || sha256sum <"$a"
    else
      printf '%s\n' "$a"
    fi
  done | sha256sum | cut -c1-64
}

image_hash() { docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }

# step NAME HASH FUNC [ARG...]: runs FUNC NAME HASH ARG... unless image NAME already carries HASH.
step() {
  local name=$1 hash=$2 fn=$3 t0=$SECONDS
  shift 3
  if [ "$(image_hash "$name")" = "$hash" ]; then
    log "fresh  $name"
    return
  fi
  log "build  $name"
  "$fn" "$name" "$hash" "$@"
  [ "$(image_hash "$name")" = "$hash" ] || die "$name was built without label $LABEL=$hash"
  log "built  $name in $((SECONDS - t0))s"
}

# docker_build NAME HASH CTX: builds CTX/Dockerfile, labelled, quietly (log in CTX/build.log).
docker_build() {
  local name=$1 hash=$2 ctx=$3
  shift 3
  if ! docker build --label "$LABEL=$hash" -t "$name" "$@" "$ctx" >"$ctx/build.log" 2>&1; then
    tail -n 30 "$ctx/build.log" >&2
    die "docker build of $name failed (log: $ctx/build.log)"
  fi
}

fresh_ctx() { rm -rf "$OUT/ctx/$1" && mkdir -p "$OUT/ctx/$1" && echo "$OUT/ctx/$1"; }

# ---- Go binaries, built at most once per run, only when an image needs them ----

declare -A BUILT=()
gobuild() { # gobuild WRAPPER OUTPUT_DIR GO_BUILD_ARGS...
  local w=$1 dst=$2 t0=$SECONDS
  shift 2
  mkdir -p "$dst"
  log "go build ($w)"
  (cd "$SRC/$w" && "$GO" build -p 2 -trimpath "$@") || die "go build in $SRC/$w failed"
  log "go build ($w) done in $((SECONDS - t0))s"
}

k8s_ldflags() { # k8s_ldflags VERSION
  local ld="-s -w" p minor=${1#v1.}
  minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$1 -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  echo "$ld"
}

# bin_kubernetes VERSION: the binaries of VERSION in $OUT/bin/<its wrapper>;
# agnhost only from the default version's.
bin_kubernetes() {
  local w=kubernetes p pkgs=()
  [ "$1" = "$K8S" ] || w=$UPGRADE_SRC
  [ -n "${BUILT[$w]:-}" ] && return
  for p in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    pkgs+=("k8s.io/kubernetes/cmd/$p")
  done
  [ "$w" = kubernetes ] && pkgs+=(k8s.io/kubernetes/test/images/agnhost)
  gobuild "$w" "$OUT/bin/$w" -ldflags "$(k8s_ldflags "$1")" -o "$OUT/bin/$w/" "${pkgs[@]}"
  BUILT[$w]=1
}
k8s_bin() { if [ "$1" = "$K8S" ]; then echo "$OUT/bin/kubernetes"; else echo "$OUT/bin/$UPGRADE_SRC"; fi; }

bin_containerd() {
  [ -n "${BUILT[containerd]:-}" ] && return
  gobuild containerd "$OUT/bin/containerd" -tags "no_btrfs no_devmapper no_zfs" -ldflags "-s -w" \
    -o "$OUT/bin/containerd/" github.com/containerd/containerd/v2/cmd/{containerd,ctr,containerd-shim-runc-v2}
  BUILT[containerd]=1
}

# ---- Debian root filesystems, cached as tarballs keyed by their package list ----

rootfs_path() { echo "$OUT/cache/rootfs-$1-$(hash_inputs "$SUITE" "$MIRROR" "$2" | cut -c1-16).tar"; }

# rootfs_tar NAME PACKAGES: prints the path of a cached debootstrap tarball.
rootfs_tar() {
  local name=$1 packages=$2 tar dir
  tar=$(rootfs_path "$name" "$packages")
  if [ ! -f "$tar" ]; then
    dir=$OUT/cache/rootfs-$name
    rm -rf "$dir"
    log "debootstrap $SUITE ($name; log: $dir.log)"
    # One package cache per rootfs: two debootstraps may run at once.
    mkdir -p "$OUT/cache/debs-$name"
    debootstrap --variant=minbase --cache-dir="$OUT/cache/debs-$name" --include="$packages" "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 \
      || { tail -n 20 "$dir.log" >&2; die "debootstrap of $name failed"; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/* "$dir"/etc/resolv.conf
    tar -C "$dir" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$dir"
  fi
  echo "$tar"
}

# ---- base images ----

build_userland() {
  local ctx
  ctx=$(fresh_ctx userland)
  ln "$(rootfs_tar userland "$USERLAND_PACKAGES")" "$ctx/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nENV PATH=%s\nCMD ["/bin/bash"]\n' "$PATH_ENV" >"$ctx/Dockerfile"
  docker_build "$1" "$2" "$ctx"
}

# static: busybox (for the cp/sh that init containers and tests use) and /tmp.
build_static() {
  local ctx
  ctx=$(fresh_ctx static)
  cp /bin/busybox "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p /tmp /etc /usr/local/bin && chmod 1777 /tmp && echo root:x:0:0:root:/root:/bin/sh >/etc/passwd && echo nobody:x:65534:65534:nobody:/:/bin/false >>/etc/passwd"]
ENV PATH=$PATH_ENV
CMD ["/bin/sh"]
EOF
  docker_build "$1" "$2" "$ctx"
}

# simple_image NAME HASH BASE BINARY DEST [ENTRYPOINT]: one binary on a base image.
simple_image() {
  local name=$1 hash=$2 base=$3 bin=$4 dest=$5 entry=${6:-} ctx
  ctx=$(fresh_ctx "$(basename "${name%%:*}")")
  cp "$bin" "$ctx/bin"
  {
    echo "FROM $base"
    echo "COPY bin $dest"
    [ -n "$entry" ] && echo "ENTRYPOINT [\"$entry\"]"
  } >"$ctx/Dockerfile"
  docker_build "$name" "$hash" "$ctx"
}

# ---- component images ----

# The Kubernetes images take their version from their tag.
build_kube_static() { # apiserver, controller-manager, scheduler
  local bin=${1#registry.k8s.io/}
  bin_kubernetes "${1##*:}"
  simple_image "$1" "$2" "$STATIC_IMAGE" "$(k8s_bin "${1##*:}")/${bin%%:*}" "/usr/local/bin/${bin%%:*}"
}
build_kube_proxy() {
  bin_kubernetes "${1##*:}"
  simple_image "$1" "$2" "$USERLAND_IMAGE" "$(k8s_bin "${1##*:}")/kube-proxy" /usr/local/bin/kube-proxy
}
build_agnhost() {
  bin_kubernetes "$K8S"
  simple_image "$1" "$2" "$USERLAND_IMAGE" "$OUT/bin/kubernetes/agnhost" /agnhost /agnhost
}
build_busybox() { docker tag "$STATIC_IMAGE" "$1" && relabel "$1" "$2"; }
build_etcd() {
  gobuild etcd "$OUT/bin/etcd" -ldflags "-s -w" -o "$OUT/bin/etcd/etcd" go.etcd.io/etcd/server/v3
  simple_image "$1" "$2" "$STATIC_IMAGE" "$OUT/bin/etcd/etcd" /usr/local/bin/etcd
}
build_coredns() {
  gobuild coredns "$OUT/bin/coredns" -ldflags "-s -w" -o "$OUT/bin/coredns/coredns" github.com/coredns/coredns
  simple_image "$1" "$2" "$STATIC_IMAGE" "$OUT/bin/coredns/coredns" /coredns /coredns
}
build_metrics_server() {
  gobuild metrics-server "$OUT/bin/metrics-server" -ldflags "-s -w" -o "$OUT/bin/metrics-server/metrics-server" \
    sigs.k8s.io/metrics-server/cmd/metrics-server
  simple_image "$1" "$2" "$STATIC_IMAGE" "$OUT/bin/metrics-server/metrics-server" /metrics-server /metrics-server
}
build_pause() {
  local src ctx
  src=$(cd "$SRC/kubernetes" && "$GO" list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  ctx=$(fresh_ctx pause)
  gcc -Os -Wall -Werror -static -DVERSION="v${IMG_PAUSE##*:}" -o "$ctx/pause" "$src"
  strip "$ctx/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
  docker_build "$1" "$2" "$ctx"
}
build_flannel() {
  # flannel's udp backend needs cgo, so link statically instead of CGO_ENABLED=0.
  CGO_ENABLED=1 gobuild flannel "$OUT/bin/flannel" \
    -ldflags "-s -w -extldflags -static -X github.com/flannel-io/flannel/pkg/version.Version=${IMG_FLANNEL##*:}" \
    -o "$OUT/bin/flannel/flanneld" github.com/flannel-io/flannel
  simple_image "$1" "$2" "$USERLAND_IMAGE" "$OUT/bin/flannel/flanneld" /opt/bin/flanneld /opt/bin/flanneld
}
build_flannel_cni() {
  gobuild flannel-cni "$OUT/bin/flannel-cni" -ldflags "-s -w" -o "$OUT/bin/flannel-cni/flannel" \
    github.com/containernetworking/plugins/plugins/meta/flannel
  simple_image "$1" "$2" "$STATIC_IMAGE" "$OUT/bin/flannel-cni/flannel" /flannel
}
build_envoy() {
  "$HERE/envoy/build.sh" "$USERLAND_IMAGE" "$1" --label "$LABEL=$2" >"$OUT/ctx/envoy.log" 2>&1 \
    || { tail -n 20 "$OUT/ctx/envoy.log" >&2; die "building the load-balancer image failed"; }
}
build_checkpointer() {
  (cd "$ROOT" && make image) >"$OUT/ctx/checkpointer.log" 2>&1 \
    || { tail -n 20 "$OUT/ctx/checkpointer.log" >&2; die "make image failed"; }
  relabel "$1" "$2"
}

# relabel NAME HASH: adds the inputs label to an image built elsewhere.
relabel() {
  local ctx
  ctx=$(fresh_ctx relabel)
  echo "FROM $1" >"$ctx/Dockerfile"
  docker_build "$1" "$2" "$ctx"
}

# ---- the kind node image ----

# Images imported into the node image, so no node pulls and kind load has little to send.
PRELOAD=()

build_node() { # build_node NAME HASH VERSION
  local name=$1 hash=$2 version=$3 ctx kindsrc cid
  bin_kubernetes "$version"
  bin_containerd
  ctx=$(fresh_ctx node)
  ln "$(rootfs_tar node "$NODE_PACKAGES")" "$ctx/rootfs.tar"

  # kind's base files, with the modes its Dockerfile gives them.
  kindsrc=$("$GO" env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files
  mkdir -p "$ctx/overlay"
  cp -r "$kindsrc/etc" "$kindsrc/kind" "$kindsrc/usr" "$ctx/overlay/"
  chmod -R u+w,a+rX "$ctx/overlay"
  find "$ctx/overlay" -type f -exec chmod 0644 {} +
  chmod 0755 "$ctx/overlay"/usr/local/bin/* "$ctx/overlay"/kind/bin/*
  cp "$OUT"/bin/containerd/{containerd,ctr,containerd-shim-runc-v2} "$ctx/overlay/usr/local/bin/"
  mkdir -p "$ctx/overlay/usr/bin"
  cp "$(k8s_bin "$version")"/{kubeadm,kubelet,kubectl} "$ctx/overlay/usr/bin/"
  echo "$version" >"$ctx/overlay/kind/version"
  # containerd: this host lacks CAP_SYS_RESOURCE, so sandboxes may not lower
  # oom_score_adj; the sandbox image is the one kubeadm asks for.
  sed -i -e 's/^\(\s*restrict_oom_score_adj\) = .*/\1 = true/' \
    -e "s|^\(\s*sandbox_image\) = .*|\1 = \"$IMG_PAUSE\"|" "$ctx/overlay/etc/containerd/config.toml"
  grep -q 'restrict_oom_score_adj = true' "$ctx/overlay/etc/containerd/config.toml" \
    || die "kind's containerd config no longer has restrict_oom_score_adj"
  # Kubernetes >= 1.35 refuses cgroup v1 unless told otherwise.
  sed -i 's/^KUBELET_EXTRA_ARGS=\(.*\)/KUBELET_EXTRA_ARGS=\1 --fail-cgroupv1=false/' "$ctx/overlay/etc/default/kubelet"

  cat >"$ctx/setup.sh" <<'EOF'
set -eux
chmod 755 /kind /kind/bin
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
  /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
  /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>/etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests /opt/cni/bin
cp -a /usr/lib/cni/. /opt/cni/bin/
ctr oci spec \
  | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json
containerd --version
kubelet --version
rm /setup.sh
EOF
  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
ADD rootfs.tar /
COPY overlay/ /
COPY setup.sh /setup.sh
RUN ["/bin/bash", "/setup.sh"]
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  docker_build "$name-unloaded" "$hash" "$ctx"

  # Preload: import the images into containerd's store inside the image. kind
  # mounts /var as a volume, which Docker seeds from the image.
  docker save -o "$ctx/preload.tar" "${PRELOAD[@]}"
  cid=$(docker run -d --privileged --entrypoint sleep -v "$ctx/preload.tar:/preload.tar:ro" "$name-unloaded" infinity)
  if ! docker exec "$cid" bash -c '
      set -e
      containerd >/tmp/containerd.log 2>&1 &
      pid=$!
      for _ in $(seq 60); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done
      ctr -n k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests /preload.tar
      kill "$pid"; wait "$pid" || true
      rm -f /tmp/containerd.log' >"$ctx/preload.log" 2>&1; then
    docker rm -f "$cid" >/dev/null
    tail -n 20 "$ctx/preload.log" >&2
    die "preloading images into the node image failed (log: $ctx/preload.log)"
  fi
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    --change "LABEL $LABEL=$hash" "$cid" "$name" >/dev/null
  docker rm -f "$cid" >/dev/null
  docker rmi "$name-unloaded" >/dev/null
  rm -f "$ctx/preload.tar" "$ctx/rootfs.tar"
}

# ---- the plan ----

fn_hash() { declare -f "$@"; }
mods() { cat "$SRC/$1/go.mod" "$SRC/$1/go.sum"; }
GOVERSION=$("$GO" env GOVERSION)
K8S_IN=$(hash_inputs "$GOVERSION" "$(mods kubernetes)" "$(fn_hash bin_kubernetes k8s_bin gobuild k8s_ldflags)")
FROM_IN=$(hash_inputs "$GOVERSION" "$(mods "$UPGRADE_SRC")" "$(fn_hash bin_kubernetes k8s_bin gobuild k8s_ldflags)")

T0=$SECONDS
# debootstrap is mostly download: run it beside the Go builds when an image will need it.
declare -A PREFETCH=()
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT # no orphaned debootstrap after a failure
prefetch() { # prefetch NAME PACKAGES IMAGE
  if [ ! -f "$(rootfs_path "$1" "$2")" ] && [ -z "$(image_hash "$3")" ]; then
    rootfs_tar "$1" "$2" >/dev/null &
    PREFETCH[$1]=$!
  fi
}
# await NAME: waits for NAME's prefetch. Only the main shell can wait for it,
# so this runs before the step, never inside a $(...).
await() {
  if [ -n "${PREFETCH[$1]:-}" ]; then
    wait "${PREFETCH[$1]}" || die "debootstrap of $1 failed (log: $OUT/cache/rootfs-$1.log)"
    unset "PREFETCH[$1]"
  fi
}
prefetch node "$NODE_PACKAGES" "$NODE_IMAGE"
prefetch userland "$USERLAND_PACKAGES" "$USERLAND_IMAGE"
h_userland=$(hash_inputs "$(fn_hash build_userland rootfs_tar)" "$SUITE" "$MIRROR" "$USERLAND_PACKAGES" "$PATH_ENV")
await userland
step "$USERLAND_IMAGE" "$h_userland" build_userland
h_static=$(hash_inputs "$(fn_hash build_static)" /bin/busybox)
step "$STATIC_IMAGE" "$h_static" build_static
SIMPLE=$(fn_hash simple_image)

# The default version's images, then those of the version the upgrade starts from.
for v in "$K8S" "$UPGRADE_FROM"; do
  in=$K8S_IN
  [ "$v" = "$K8S" ] || in=$FROM_IN
  for img in "${IMG_APISERVER%:*}:$v" "${IMG_CONTROLLERMANAGER%:*}:$v" "${IMG_SCHEDULER%:*}:$v"; do
    step "$img" "$(hash_inputs "$in" "$h_static" "$SIMPLE" "$(fn_hash build_kube_static)")" build_kube_static
  done
  step "${IMG_PROXY%:*}:$v" "$(hash_inputs "$in" "$h_userland" "$SIMPLE" "$(fn_hash build_kube_proxy)")" build_kube_proxy
done
FROM_IMAGES=("${IMG_APISERVER%:*}:$UPGRADE_FROM" "${IMG_CONTROLLERMANAGER%:*}:$UPGRADE_FROM" "${IMG_SCHEDULER%:*}:$UPGRADE_FROM"
  "${IMG_PROXY%:*}:$UPGRADE_FROM")
step "$IMG_ETCD" "$(hash_inputs "$GOVERSION" "$(mods etcd)" "$h_static" "$SIMPLE" "$(fn_hash build_etcd gobuild)")" build_etcd
step "$IMG_COREDNS" "$(hash_inputs "$GOVERSION" "$(mods coredns)" "$h_static" "$SIMPLE" "$(fn_hash build_coredns gobuild)")" build_coredns
step "$IMG_PAUSE" "$(hash_inputs "$(mods kubernetes)" "$(gcc --version | head -1)" "$(fn_hash build_pause)")" build_pause

step "$IMG_FLANNEL" "$(hash_inputs "$GOVERSION" "$(mods flannel)" "$h_userland" "$SIMPLE" "$(fn_hash build_flannel gobuild)")" build_flannel
step "$IMG_FLANNELCNI" "$(hash_inputs "$GOVERSION" "$(mods flannel-cni)" "$h_static" "$SIMPLE" "$(fn_hash build_flannel_cni gobuild)")" build_flannel_cni
step "$IMG_METRICSSERVER" "$(hash_inputs "$GOVERSION" "$(mods metrics-server)" "$h_static" "$SIMPLE" "$(fn_hash build_metrics_server gobuild)")" build_metrics_server
step "$AGNHOST_IMAGE" "$(hash_inputs "$K8S_IN" "$h_userland" "$SIMPLE" "$(fn_hash build_agnhost)")" build_agnhost
step "$BUSYBOX_IMAGE" "$(hash_inputs "$h_static" "$(fn_hash build_busybox relabel)")" build_busybox

# Everything but the checkpointer, which changes with this repo's code: the
# suite then has nearly nothing to kind-load.
PRELOAD=("$IMG_APISERVER" "$IMG_CONTROLLERMANAGER" "$IMG_SCHEDULER" "$IMG_PROXY" "$IMG_ETCD" "$IMG_COREDNS" "$IMG_PAUSE"
  "$IMG_FLANNEL" "$IMG_FLANNELCNI" "$IMG_METRICSSERVER" "$AGNHOST_IMAGE" "$BUSYBOX_IMAGE")
kindfiles=$("$GO" env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files
# Fetched before it is hashed: hashed while absent, the path alone stands in
# for its files, and the next run, with the files there, rebuilds the node.
[ -d "$kindfiles" ] || (cd "$ROOT" && "$GO" mod download sigs.k8s.io/kind)
node_hash() { # node_hash K8S_INPUTS IMAGE...
  local in=$1
  shift
  hash_inputs "$in" "$GOVERSION" "$(mods containerd)" "$(fn_hash build_node bin_containerd rootfs_tar)" \
    "$SUITE" "$MIRROR" "$NODE_PACKAGES" "$KIND_VERSION" "$kindfiles" "$(for img in "$@"; do image_hash "$img"; done)"
}
await node
step "$NODE_IMAGE" "$(node_hash "$K8S_IN" "${PRELOAD[@]}")" build_node "$K8S"
# The upgrade's node image: its own version's components, the rest, and the
# default version's components, which the upgrade moves to without a pull.
PRELOAD+=("${FROM_IMAGES[@]}")
step "kindest/node:$UPGRADE_FROM" "$(node_hash "$FROM_IN" "${PRELOAD[@]}")" build_node "$UPGRADE_FROM"

[ -x "$HERE/envoy/build.sh" ] || die "$HERE/envoy/build.sh is missing: the load-balancer image cannot be built"
step "$ENVOY_IMAGE" "$(hash_inputs "$GOVERSION" "$HERE/envoy" "$ROOT/go.mod" "$ROOT/go.sum" "$h_userland" \
  "$(fn_hash build_envoy)")" build_envoy

step "$IMG_CHECKPOINTER" "$(hash_inputs "$GOVERSION" "$ROOT/go.mod" "$ROOT/go.sum" "$ROOT/cmd" "$ROOT/plugin" "$ROOT/internal" \
  "$(fn_hash build_checkpointer relabel)")" build_checkpointer

log "images ready in $((SECONDS - T0))s"
