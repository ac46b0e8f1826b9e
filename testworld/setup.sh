#!/usr/bin/env bash
# Installs and builds the servers of the test world (section 9 of the design).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
    || ! command -v etcd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus etcd-server
fi
# Kubernetes components from the Go module proxy, Istio CRDs from istio.io/api (cached in .cache/).
bash testworld/build-kube.sh
# istiod (pilot-discovery) from the Go module proxy, cached in .cache/istio/<version>/.
bash testworld/build-istiod.sh
# helm for the chart's tests, from the Go module proxy (cached in .cache/helm/).
bash testworld/build-helm.sh
# chromium and chromedriver from Debian for the dashboard's browser tests.
bash testworld/install-browser.sh
