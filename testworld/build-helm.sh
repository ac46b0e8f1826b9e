#!/usr/bin/env bash
# Builds the real `helm` (helm.sh/helm/v4) from the Go module proxy, for the chart's tests
# (`helm lint`, `helm template`). helm's module has no replace directives, so a plain
# `go install module/cmd/helm@version` works; the binary is cached in
# .cache/helm/<version>/helm and a warm machine skips the build.
#
# Environment: HELM_VERSION (default below), GO (the go command), FORCE=1 to rebuild.
# GOMODCACHE/GOCACHE keep the Go defaults, so the module and build caches are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

HELM_VERSION=${HELM_VERSION:-v4.3.2}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export CGO_ENABLED=0 GOTOOLCHAIN=local

log() { printf '[build-helm] %s\n' "$*" >&2; }

out_dir="$ROOT/.cache/helm/$HELM_VERSION"
bin="$out_dir/helm"
if [[ -x "$bin" && "${FORCE:-0}" != 1 ]]; then
  log "cached: $bin ($("$bin" version --short))"
  exit 0
fi
start=$SECONDS
mkdir -p "$out_dir"
log "building helm $HELM_VERSION (cold: minutes; cached afterwards)"
GOBIN="$out_dir/bin.tmp" "$GO" install -trimpath \
  -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
mv "$out_dir/bin.tmp/helm" "$bin"
rmdir "$out_dir/bin.tmp"
log "built $bin in $((SECONDS - start)) s: $("$bin" version --short)"
