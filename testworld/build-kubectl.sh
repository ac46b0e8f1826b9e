#!/usr/bin/env bash
# Builds the real `kubectl` of the test world's Kubernetes release from the Go module proxy,
# for the plugin tests (`kubectl plugin list`, `kubectl meshctl`). It reuses the wrapper
# module that build-kube-apiserver.sh generates (k8s.io/kubernetes with its staging modules
# replaced by their published versions), copied so the two builds never share a go.mod.
#
#   .cache/kube/<version>/kubectl
#
# Environment: KUBE_VERSION (default below), GO (the go command), FORCE=1 to rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

log() { printf '[build-kubectl] %s\n' "$*" >&2; }

out_dir="$ROOT/.cache/kube/$KUBE_VERSION"
bin="$out_dir/kubectl"
if [[ -x "$bin" && "${FORCE:-0}" != 1 ]]; then
  log "cached: $bin"
  exit 0
fi
if [[ ! -s "$out_dir/src/go.mod" ]]; then
  KUBE_VERSION=$KUBE_VERSION bash testworld/build-kube-apiserver.sh
fi
start=$SECONDS
src="$out_dir/kubectl-src"
rm -rf "$src"
mkdir -p "$src"
cp "$out_dir/src/go.mod" "$out_dir/src/go.sum" "$src/"
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done
(
  cd "$src"
  "$GO" get "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION" 2>"$out_dir/kubectl-go-get.log" || {
    tail -n 30 "$out_dir/kubectl-go-get.log" >&2
    exit 1
  }
  log "building kubectl $KUBE_VERSION (cold: minutes; cached afterwards)"
  "$GO" build -buildvcs=false -trimpath -ldflags="-s -w $ldflags" -o "$bin.tmp" \
    k8s.io/kubernetes/cmd/kubectl
)
mv "$bin.tmp" "$bin"
log "built $bin in $((SECONDS - start)) s: $("$bin" version --client 2>/dev/null | head -n 1)"
