#!/usr/bin/env bash
# Real-cluster end-to-end for users with Docker: kind + Istio + a sample app + one rollout.
# It cannot run where there is no Docker engine (our CI); the test world covers the API
# server, Prometheus and Envoy there. Needs: docker, kind, kubectl, istioctl on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-meshctl-e2e}
for tool in docker kind kubectl istioctl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind needs $tool on PATH" >&2; exit 2; }
done
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER"
istioctl install -y --set profile=demo
kubectl apply -f "$(dirname "$(command -v istioctl)")/../samples/addons/prometheus.yaml" || true
docker build -t meshctl:dev .
kind load docker-image meshctl:dev --name "$CLUSTER"
kubectl apply -k manifests/
kubectl -n meshctl-system rollout status deploy/meshctl-controller --timeout=180s
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace demo istio-injection=enabled --overwrite
kubectl -n demo apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, meshctl.io/track: stable}}
    spec: {containers: [{name: web, image: "hashicorp/http-echo:1.0", args: ["-text=v1"]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 5678}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http: [{name: primary, route: [{destination: {host: web, subset: stable}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets: [{name: stable, labels: {meshctl.io/track: stable}}]
---
apiVersion: meshctl.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  service: web
  workloadRef: {name: web}
  template:
    metadata: {labels: {app: web, meshctl.io/track: stable}}
    spec: {containers: [{name: web, image: "hashicorp/http-echo:1.0", args: ["-text=v1"]}]}
  trafficRouting:
    istio:
      virtualService: {name: web, routes: [primary]}
      destinationRule: {name: web, stableSubset: stable, canarySubset: canary}
  slo: {minRequests: 0}
  strategy:
    canary:
      steps: [{setWeight: 20}, {pause: {duration: 30s}}, {setWeight: 60}, {pause: {duration: 30s}}]
YAML
.venv/bin/meshctl -n demo rollout start web --image hashicorp/http-echo:0.2.3 --wait --timeout 600
