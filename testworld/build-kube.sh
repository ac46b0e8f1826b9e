#!/usr/bin/env bash
# Builds the Kubernetes components of the test world from the Go module proxy and fetches
# Istio's CRDs (design section 9):
#
#   .cache/kube/<version>/kube-apiserver            the API server
#   .cache/kube/<version>/kube-controller-manager   Deployments, ReplicaSets, EndpointSlices...
#   .cache/kube/<version>/kube-scheduler            binds Pods to nodes
#   .cache/kube/<version>/kubemark                  hollow nodes: real kubelet, fake runtime
#   .cache/kube/<version>/kubectl                   the client, for the kubectl plugin tests
#   .cache/kube/<version>/build-times.tsv           component, seconds, bytes of each build
#   .cache/istio/crds.yaml                          Istio CRDs with their real OpenAPI schemas
#   .cache/gateway-api/crds.yaml                    Gateway API CRDs (standard channel)
#
# A binary already present is kept (a warm machine skips the build).
#
# `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` cannot work: k8s.io/kubernetes requires
# its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces them with
# local directories, which a module consumer never sees. So we generate a wrapper module that
# requires k8s.io/kubernetes and replaces every k8s.io/* module required at v0.0.0 with the
# published v0.<minor>.<patch> of the same release; the list is read from k8s.io/kubernetes's
# own go.mod, never hand-copied. All components build in that one module.
#
# Environment: KUBE_VERSION (default below), ISTIO_API_VERSION, GATEWAY_API_VERSION, GO (the go command),
# FORCE=1 to rebuild, NICE (default "nice -n 10") prefixes the go builds.
# GOPATH/GOMODCACHE/GOCACHE keep the Go defaults, so the module and build caches are reused
# across runs (and the components share most packages).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
ISTIO_API_VERSION=${ISTIO_API_VERSION:-v1.32.0}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.6.0}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

log() { printf '[build-kube] %s\n' "$*" >&2; }

# Reads one field of `go mod download -json` output on stdin.
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# Reads `go mod edit -json` output of a go.mod on stdin; prints one item a line of:
# go (the go directive), godebug (key=value), staging (k8s.io/* required at v0.0.0).
upstream_go_mod_field() {
  python3 -c '
import json, sys
mod, field = json.load(sys.stdin), sys.argv[1]
if field == "go":
    print(mod["Go"])
elif field == "godebug":
    for entry in mod.get("Godebug") or []:
        print(entry["Key"] + "=" + entry["Value"])
elif field == "staging":
    for req in mod["Require"]:
        if req["Path"].startswith("k8s.io/") and req["Version"] == "v0.0.0":
            print(req["Path"])
' "$1"
}

COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubemark kubectl)

build_kube() {
  local out_dir="$ROOT/.cache/kube/$KUBE_VERSION"
  local src="$out_dir/src"
  local missing=() c
  for c in "${COMPONENTS[@]}"; do
    if [[ -x "$out_dir/$c" && "${FORCE:-0}" != 1 ]]; then
      log "cached: $out_dir/$c"
    else
      missing+=("$c")
    fi
  done
  ((${#missing[@]})) || return 0
  mkdir -p "$out_dir"

  # The wrapper module resolves every component, so one `go get` serves them all; it is
  # regenerated when it was made for another version or another set of components.
  local stamp="$src/.resolved" want="$KUBE_VERSION ${COMPONENTS[*]}"
  if [[ ! -s "$src/go.sum" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$src"
    mkdir -p "$src"
    log "resolving k8s.io/kubernetes@$KUBE_VERSION"
    local upstream_mod
    upstream_mod=$("$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | json_field GoMod)

    # k8s.io/kubernetes vX.Y.Z publishes its staging modules as v0.Y.Z.
    local staging_version="v0.${KUBE_VERSION#v1.}"
    local upstream_json
    upstream_json=$("$GO" mod edit -json "$upstream_mod")

    # From upstream's go.mod: its go directive, its godebug lines, and every k8s.io/* module
    # it requires at v0.0.0 (its staging modules).
    local go_directive godebugs staging
    go_directive=$(upstream_go_mod_field go <<<"$upstream_json")
    godebugs=$(upstream_go_mod_field godebug <<<"$upstream_json")
    staging=$(upstream_go_mod_field staging <<<"$upstream_json")

    (
      cd "$src"
      "$GO" mod init meshctl.local/kube-build 2>/dev/null
      local edits=(-go="$go_directive" -require="k8s.io/kubernetes@$KUBE_VERSION")
      local line count=0 packages=()
      for line in $godebugs; do edits+=(-godebug="$line"); done
      for line in $staging; do
        edits+=(-replace="$line=$line@$staging_version")
        count=$((count + 1))
      done
      "$GO" mod edit "${edits[@]}"
      log "wrapper module: $count staging modules replaced with $staging_version"
      for line in "${COMPONENTS[@]}"; do
        packages+=("k8s.io/kubernetes/cmd/$line@$KUBE_VERSION")
      done
      # Resolve the packages' dependency graph into go.mod/go.sum.
      "$GO" get "${packages[@]}" 2>"$out_dir/go-get.log" || {
        tail -n 30 "$out_dir/go-get.log" >&2
        exit 1
      }
    )
    printf '%s\n' "$want" >"$stamp"
  fi

  local minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local pkg ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  local nice
  read -r -a nice <<<"${NICE-nice -n 10}"
  for c in "${missing[@]}"; do
    local bin="$out_dir/$c" start=$SECONDS
    log "building $c $KUBE_VERSION (cold: minutes; cached afterwards)"
    (cd "$src" && "${nice[@]}" "$GO" build -buildvcs=false -trimpath -ldflags="-s -w $ldflags" \
      -o "$bin.tmp" "k8s.io/kubernetes/cmd/$c")
    mv "$bin.tmp" "$bin"
    printf '%s\t%s\t%s\n' "$c" "$((SECONDS - start))" "$(stat -c %s "$bin")" \
      >>"$out_dir/build-times.tsv"
    local version_args=(--version)
    [[ $c == kubectl ]] && version_args=(version --client)
    log "built $bin in $((SECONDS - start)) s: $("$bin" "${version_args[@]}" 2>&1 | head -n 1)"
  done
}

fetch_istio_crds() {
  local out="$ROOT/.cache/istio/crds.yaml"
  local stamp="$ROOT/.cache/istio/version"
  if [[ -s "$out" && "$(cat "$stamp" 2>/dev/null)" == "$ISTIO_API_VERSION" ]]; then
    log "cached: $out (istio.io/api $ISTIO_API_VERSION)"
    return
  fi
  local dir
  dir=$("$GO" mod download -json "istio.io/api@$ISTIO_API_VERSION" | json_field Dir)
  mkdir -p "$(dirname "$out")"
  cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$out.tmp"
  chmod u+w "$out.tmp"
  mv "$out.tmp" "$out"
  printf '%s\n' "$ISTIO_API_VERSION" >"$stamp"
  log "fetched Istio CRDs from istio.io/api $ISTIO_API_VERSION into $out"
}

# The Gateway API's standard-channel CRDs from the sigs.k8s.io/gateway-api module, in one
# file (its ValidatingAdmissionPolicy against mixing channels is left out: not a CRD).
fetch_gateway_api_crds() {
  local out="$ROOT/.cache/gateway-api/crds.yaml"
  local stamp="$ROOT/.cache/gateway-api/version"
  if [[ -s "$out" && "$(cat "$stamp" 2>/dev/null)" == "$GATEWAY_API_VERSION" ]]; then
    log "cached: $out (sigs.k8s.io/gateway-api $GATEWAY_API_VERSION)"
    return
  fi
  local dir file
  dir=$("$GO" mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | json_field Dir)
  mkdir -p "$(dirname "$out")"
  : >"$out.tmp"
  for file in "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
    [[ $file == *_vap_* ]] && continue
    { printf -- '---\n'; cat "$file"; } >>"$out.tmp"
  done
  mv "$out.tmp" "$out"
  printf '%s\n' "$GATEWAY_API_VERSION" >"$stamp"
  log "fetched Gateway API CRDs from sigs.k8s.io/gateway-api $GATEWAY_API_VERSION into $out"
}

# go mod download needs a module-agnostic working directory.
cd "$ROOT/.cache" 2>/dev/null || { mkdir -p "$ROOT/.cache" && cd "$ROOT/.cache"; }
fetch_istio_crds
fetch_gateway_api_crds
build_kube
