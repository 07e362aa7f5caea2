#!/usr/bin/env bash
# Install test for the krew manifest, run by `make krew-check` (CI).
#
#   krew/install-test.sh MANIFEST LINUX_AMD64_ARCHIVE TOOLS_DIR
#
# TOOLS_DIR holds kubectl, kubectl-krew and validate-krew-manifest, built from
# the pinned modules under krew/tools/. Everything happens in a temporary
# KREW_ROOT and HOME, offline:
#   1. validate-krew-manifest -manifest MANIFEST, which also installs every
#      platform through `kubectl krew install` and checks the LICENSE is there;
#      a test shim named kubectl hands krew the matching local dist/ archive
#      (--archive), so krew never fetches the manifest's GitHub URIs;
#   2. kubectl krew install --manifest=MANIFEST --archive=ARCHIVE;
#   3. kubectl selfhost version (and --help, and TAB completion) through
#      kubectl's own plugin discovery, from $KREW_ROOT/bin on PATH;
#   4. kubectl krew uninstall selfhost, and nothing of selfhost is left.
# Nothing may reach the network: the script re-runs itself in an empty network
# namespace when it may (unshare -n), proxies point at a closed local port, and
# so does the kubeconfig.
set -euo pipefail

# Where allowed (root, as in CI), run in a network namespace of our own, with no
# route anywhere: then "offline" is enforced, not just intended.
if [ -z "${SELFHOST_KREW_TEST_NETNS:-}" ] && unshare -n true 2>/dev/null; then
	export SELFHOST_KREW_TEST_NETNS=isolated
	exec unshare -n "$0" "$@"
fi

say()  { printf '\n==> %s\n' "$*"; }
ok()   { printf '    ok: %s\n' "$*"; }
die()  { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

[ $# -eq 3 ] || die "usage: $0 MANIFEST LINUX_AMD64_ARCHIVE TOOLS_DIR"
abs() { (cd "$(dirname "$1")" && printf '%s/%s' "$(pwd -P)" "$(basename "$1")"); }
manifest=$(abs "$1")
archive=$(abs "$2")
tools=$(abs "$3")
dist=$(dirname "$archive")
for f in "$manifest" "$archive"; do [ -f "$f" ] || die "$f does not exist (run make dist krew-manifest)"; done
for t in kubectl kubectl-krew validate-krew-manifest; do
	[ -x "$tools/$t" ] || die "$tools/$t is missing (make krew-check builds it)"
done
# kubectl-selfhost_<version>_linux_amd64.tar.gz -> <version>
version=$(basename "$archive"); version=${version#kubectl-selfhost_}; version=${version%_linux_amd64.tar.gz}
if [ -z "$version" ] || [ "$version" = "$(basename "$archive")" ]; then die "cannot read the version from $archive"; fi
# spec.version of the manifest: krew installs into store/selfhost/<it>.
spec_version=$(sed -n 's/^  version: *//p' "$manifest")
[ -n "$spec_version" ] || die "no spec.version in $manifest"

work=$(mktemp -d "${TMPDIR:-/tmp}/selfhost-krew-test.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# A sealed environment: no user kubeconfig, krew root, plugins or proxies.
export HOME="$work/home" TMPDIR="$work/tmp" KREW_ROOT="$work/krew-root"
mkdir -p "$HOME" "$TMPDIR"
export KREW_NO_UPGRADE_CHECK=1
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=
export KUBECONFIG="$work/kubeconfig"
cat >"$KUBECONFIG" <<'EOF'
apiVersion: v1
kind: Config
clusters:
- name: closed-port
  cluster:
    server: https://127.0.0.1:9
contexts:
- name: closed-port
  context:
    cluster: closed-port
    user: nobody
current-context: closed-port
users:
- name: nobody
  user: {}
EOF
unset KREW_OS KREW_ARCH
export PATH="$KREW_ROOT/bin:$tools:/usr/local/bin:/usr/bin:/bin"
[ "$(command -v kubectl)" = "$tools/kubectl" ] || die "kubectl on PATH is $(command -v kubectl), not $tools/kubectl"
printf 'manifest: %s\narchive:  %s\nversion:  %s (spec.version %s)\nkubectl:  %s\nnetwork:  %s\nKREW_ROOT=%s\n' \
	"$manifest" "$archive" "$version" "$spec_version" "$(kubectl version --client 2>/dev/null | head -1)" \
	"${SELFHOST_KREW_TEST_NETNS:-not isolated (unshare -n not permitted); proxies point at 127.0.0.1:9}" "$KREW_ROOT"

# Nothing of selfhost may exist anywhere on this PATH before the install.
for d in ${PATH//:/ }; do
	for f in "$d"/kubectl-selfhost "$d"/kubectl_complete-selfhost; do
		[ ! -e "$f" ] || die "$f is already on PATH; plugin discovery would not prove the krew install"
	done
done

# ---------------------------------------------------------------------------
say "validate-krew-manifest -manifest $(basename "$manifest") (all platforms, offline)"
# validate-krew-manifest runs `kubectl krew install --manifest M -v=4` once per
# platform with only KREW_ROOT, KREW_OS, KREW_ARCH and PATH set. This shim, first
# on its PATH, adds --archive=<the dist archive of KREW_OS/KREW_ARCH>, so each
# platform's real archive goes through krew's sha256 check and extraction.
shim="$work/shim"
mkdir -p "$shim"
cat >"$shim/kubectl" <<EOF
#!/bin/sh
set -eu
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 KREW_NO_UPGRADE_CHECK=1
case "\$*" in
"krew install --manifest "*) ;;
*) echo "kubectl test shim: unexpected call: kubectl \$*" >&2; exit 2 ;;
esac
ext=tar.gz; [ "\$KREW_OS" = windows ] && ext=zip
a="$dist/kubectl-selfhost_${version}_\${KREW_OS}_\${KREW_ARCH}.\$ext"
echo "kubectl test shim: \$KREW_OS/\$KREW_ARCH -> --archive=\$a" >&2
exec "$tools/kubectl" "\$@" --archive="\$a" </dev/null
EOF
chmod +x "$shim/kubectl"
PATH="$shim:$PATH" validate-krew-manifest -manifest "$manifest" 2>&1 | sed 's/^/    | /' ||
	die "validate-krew-manifest rejected $manifest (output above)"
ok "manifest is valid and every platform installs with its LICENSE"

# ---------------------------------------------------------------------------
say "kubectl krew install --manifest=$(basename "$manifest") --archive=$(basename "$archive")"
# krew refuses `uninstall` without an initialised index; give it an empty local
# git repository as the default index instead of letting it clone one.
git init -q "$KREW_ROOT/index/default"
kubectl krew install --manifest="$manifest" --archive="$archive" </dev/null 2>&1 | sed 's/^/    | /' ||
	die "kubectl krew install failed (output above)"
link="$KREW_ROOT/bin/kubectl-selfhost"
[ -L "$link" ] || die "krew did not link $link"
target=$(readlink "$link")
[ "$target" = "$KREW_ROOT/store/selfhost/$spec_version/kubectl-selfhost" ] || die "$link points at $target"
ok "$link -> $target"
for f in LICENSE kubectl_complete-selfhost; do
	[ -f "$KREW_ROOT/store/selfhost/$spec_version/$f" ] || die "$f was not installed"
done
[ -x "$KREW_ROOT/store/selfhost/$spec_version/kubectl_complete-selfhost" ] || die "kubectl_complete-selfhost is not executable"
ok "LICENSE and kubectl_complete-selfhost installed beside the binary"
# krew names plugins installed from a --manifest as detached/<name>.
listed=$(kubectl krew list 2>/dev/null) || die "kubectl krew list failed"
printf '%s\n' "$listed" | grep -qE '^([^/]+/)?selfhost$' || die "kubectl krew list does not show selfhost: $listed"
ok "kubectl krew list shows $(printf '%s\n' "$listed" | grep -E 'selfhost$')"

# ---------------------------------------------------------------------------
say "kubectl selfhost version (through kubectl's plugin discovery)"
plugins=$(kubectl plugin list 2>/dev/null || true)
printf '%s\n' "$plugins" | sed 's/^/    | /'
printf '%s\n' "$plugins" | grep -qx "$link" || die "kubectl plugin list does not show $link"
out=$(kubectl selfhost version 2>&1) || die "kubectl selfhost version failed: $out"
printf '%s\n' "$out" | sed 's/^/    | /'
printf '%s\n' "$out" | grep -qF -- "$version" || die "kubectl selfhost version does not print $version"
ok "kubectl ran the krew-installed plugin, version $version"

help=$(kubectl selfhost --help 2>&1) || die "kubectl selfhost --help failed: $help"
printf '%s\n' "$help" | grep -q 'kubectl selfhost' || die "kubectl selfhost --help does not say 'kubectl selfhost'"
if printf '%s\n' "$help" | grep -qE '^[[:space:]]+kubectl-selfhost([[:space:]]|$)'; then
	die "kubectl selfhost --help shows usage as the binary's name kubectl-selfhost"
fi
ok "kubectl selfhost --help shows usage as 'kubectl selfhost', not 'kubectl-selfhost'"

# Completion: krew only links the binary, so do what the manifest's caveats tell
# users: put the installed kubectl_complete-selfhost on PATH. kubectl then calls
# it for `kubectl selfhost <TAB>`.
# Control: without the helper on PATH kubectl has nothing to offer.
if kubectl __complete selfhost '' 2>/dev/null | grep -q '^version'; then
	die "kubectl completes 'kubectl selfhost' without kubectl_complete-selfhost on PATH; the check below would prove nothing"
fi
mkdir -p "$work/user-bin"
ln -s "$KREW_ROOT/store/selfhost/$spec_version/kubectl_complete-selfhost" "$work/user-bin/"
comp=$(PATH="$PATH:$work/user-bin" kubectl __complete selfhost '' 2>/dev/null) || die "kubectl __complete selfhost failed"
printf '%s\n' "$comp" | grep -q '^version' || die "completion of 'kubectl selfhost <TAB>' does not offer version: $comp"
ok "kubectl __complete selfhost '' offers: $(printf '%s\n' "$comp" | grep -v '^:' | cut -f1 | tr '\n' ' ')"
rm -rf "$work/user-bin"

# ---------------------------------------------------------------------------
say "kubectl krew uninstall selfhost"
kubectl krew uninstall selfhost 2>&1 | sed 's/^/    | /' ||
	die "kubectl krew uninstall selfhost failed (output above)"
left=$(find "$KREW_ROOT" -path "$KREW_ROOT/index" -prune -o -iname '*selfhost*' -print)
[ -z "$left" ] || die "left behind in KREW_ROOT: $left"
[ -z "$(ls -A "$KREW_ROOT/bin")" ] || die "KREW_ROOT/bin is not empty: $(ls -A "$KREW_ROOT/bin")"
[ -z "$(ls -A "$KREW_ROOT/receipts")" ] || die "KREW_ROOT/receipts is not empty: $(ls -A "$KREW_ROOT/receipts")"
[ -z "$(ls -A "$KREW_ROOT/store")" ] || die "KREW_ROOT/store is not empty: $(ls -A "$KREW_ROOT/store")"
ok "no selfhost file left under $KREW_ROOT (bin/, receipts/, store/ empty)"
if kubectl selfhost version >/dev/null 2>&1; then die "kubectl selfhost still runs after uninstall"; fi
ok "kubectl selfhost is gone from plugin discovery"

say "krew install test passed"
