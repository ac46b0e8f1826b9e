#!/usr/bin/env bash
# Installs and builds the servers of the test world (section 9 of the design).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
    || ! command -v etcd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus etcd-server
fi
# chromium and chromedriver from Debian for the dashboard's browser tests, and npm for
# the charting library they draw with (fetched by `make install` when npm is there).
bash testworld/install-browser.sh
REQUIRE_UPLOT=1 bash hack/fetch-uplot.sh
# The Go builds, side by side: on a machine that has built nothing much of each is waiting
# for module downloads, which overlap with the others' compiling (each is cached in .cache/
# and skipped on a warm machine; Go's module and build caches are safe to share).
#   build-kube:   Kubernetes components from the Go module proxy, Istio CRDs from istio.io/api
#   build-istiod: istiod (pilot-discovery) and pilot-agent, in .cache/istio/<version>/
#   build-helm:   helm for the chart's tests, in .cache/helm/
logs=.cache/build-logs
mkdir -p "$logs"
builds=(build-kube build-istiod build-helm)
pids=()
for build in "${builds[@]}"; do
  bash "testworld/$build.sh" >"$logs/$build.log" 2>&1 &
  pids+=("$!")
done
failed=0
for i in "${!builds[@]}"; do
  build=${builds[$i]}
  if wait "${pids[$i]}"; then
    tail -n 3 "$logs/$build.log"
  else
    failed=1
    echo "testworld/$build.sh failed; the end of its log ($logs/$build.log):" >&2
    tail -n 40 "$logs/$build.log" >&2
  fi
done
[[ $failed == 0 ]]
