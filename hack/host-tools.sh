#!/usr/bin/env bash
# Usage: hack/host-tools.sh WHO TOOL=PACKAGE...
# Makes sure each TOOL (a command, or an absolute path) is on this host. As
# root on Debian it installs the missing ones' packages; elsewhere it names
# the exact apt-get line and fails. WHO prefixes its messages.
set -euo pipefail
who=$1
shift
missing=() packages=()
for pair in "$@"; do
  tool=${pair%%=*} package=${pair#*=}
  if [[ $tool == /* ]]; then [ -e "$tool" ] && continue; else command -v "$tool" >/dev/null && continue; fi
  missing+=("$tool") packages+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "$who: installing ${packages[*]}" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; } >&2 ||
    { echo "$who: cannot install ${packages[*]}" >&2; exit 1; }
  exit 0
fi
echo "$who: missing ${missing[*]}; install with: sudo apt-get install ${packages[*]}" >&2
exit 1
