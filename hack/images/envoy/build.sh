#!/usr/bin/env bash
# build.sh BASE [TAG [DOCKER_BUILD_ARGS...]]: builds kind's load-balancer image
# (default TAG docker.io/envoyproxy/envoy:v1.36.2): a static build of this
# package as /usr/local/bin/envoy on BASE, a Debian bookworm userland with
# bash and coreutils. Extra arguments go to docker build, e.g. --label K=V.
#
# The binary is built on the host (no Go toolchain image is available
# offline) into a throwaway context, so this directory stays clean.
set -euo pipefail
base=${1:?usage: build.sh BASE [TAG [DOCKER_BUILD_ARGS...]]}
tag=${2:-docker.io/envoyproxy/envoy:v1.36.2}
shift $(($# < 2 ? $# : 2))
here=$(cd "$(dirname "$0")" && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
(cd "$here" && CGO_ENABLED=0 "${GO:-go}" build -trimpath -ldflags '-s -w' -o "$ctx/envoy" .)
cp "$here/Dockerfile" "$ctx/"
docker build --build-arg BASE="$base" -t "$tag" "$@" "$ctx"
