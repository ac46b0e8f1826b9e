#!/usr/bin/env bash
# Builds istiod (pilot-discovery) from the Go module proxy for the test world (issue 10).
#
#   .cache/istio/<version>/pilot-discovery   istiod (a warm machine skips the build)
#   .cache/istio/<version>/pilot-agent       istio-agent: certificates (SDS) for a sidecar Envoy
#
# istio.io/istio publishes only pseudo-versions, so we pin one and build it from a generated
# wrapper module that requires it. The wrapper takes the go directive, godebug lines and any
# replace/exclude directives from istio's own go.mod (read with `go mod edit -json`, never
# hand-copied), so another pinned version with replace directives builds the same way.
#
# Environment: ISTIO_VERSION (default below), GO (the go command), FORCE=1 to rebuild,
# NICE (niceness of the go build, default 15). GOPATH/GOMODCACHE/GOCACHE keep the Go
# defaults, so the module and build caches are reused across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ISTIO_VERSION=${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
NICE=${NICE:-15}
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

log() { printf '[build-istiod] %s\n' "$*" >&2; }

out_dir="$ROOT/.cache/istio/$ISTIO_VERSION"
COMMANDS=(pilot-discovery pilot-agent)
if [[ -x "$out_dir/pilot-discovery" && -x "$out_dir/pilot-agent" && "${FORCE:-0}" != 1 ]]; then
  log "cached: $out_dir/{pilot-discovery,pilot-agent}"
  exit 0
fi
start=$SECONDS
src="$out_dir/src"
rm -rf "$src"
mkdir -p "$src"
cd "$out_dir"  # go mod download wants a directory outside any module

log "resolving istio.io/istio@$ISTIO_VERSION"
upstream_mod=$("$GO" mod download -json "istio.io/istio@$ISTIO_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')

# Arguments to `go mod edit` carried over from upstream's go.mod, one a line.
mapfile -t edits < <("$GO" mod edit -json "$upstream_mod" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
def at(m):
    return m["Path"] + ("@" + m["Version"] if m.get("Version") else "")
print("-go=" + mod["Go"])
for entry in mod.get("Godebug") or []:
    print("-godebug=" + entry["Key"] + "=" + entry["Value"])
for r in mod.get("Replace") or []:
    if not r["New"].get("Version"):
        sys.exit("istio replaces %s with the local path %s" % (at(r["Old"]), r["New"]["Path"]))
    print("-replace=" + at(r["Old"]) + "=" + at(r["New"]))
for e in mod.get("Exclude") or []:
    print("-exclude=" + at(e))
')

(
  cd "$src"
  "$GO" mod init meshctl.local/istiod-build 2>/dev/null
  "$GO" mod edit "${edits[@]}" -require="istio.io/istio@$ISTIO_VERSION"
  for cmd in "${COMMANDS[@]}"; do
    log "building $cmd (nice $NICE; cold: many minutes on 2 cores; cached afterwards)"
    if ! nice -n "$NICE" "$GO" build -buildvcs=false -trimpath -ldflags='-s -w' \
        -o "$out_dir/$cmd.tmp" "istio.io/istio/pilot/cmd/$cmd" >"$out_dir/build.log" 2>&1; then
      tail -n 30 "$out_dir/build.log" >&2
      exit 1
    fi
  done
)
for cmd in "${COMMANDS[@]}"; do mv "$out_dir/$cmd.tmp" "$out_dir/$cmd"; done
log "built ${COMMANDS[*]} in $out_dir in $((SECONDS - start)) s"
