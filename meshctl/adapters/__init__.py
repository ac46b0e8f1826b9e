"""Thin I/O: each module translates one server or library, and decides nothing.

Clients: :mod:`~meshctl.adapters.kube` (the API server, the ``kubernetes`` library),
:mod:`~meshctl.adapters.rest` (the CLI's quicker standard-library client),
:mod:`~meshctl.adapters.cache` (watch-fed reads for the controller),
:mod:`~meshctl.adapters.prometheus`, :mod:`~meshctl.adapters.istiod` (the data plane as
istiod sees it), :mod:`~meshctl.adapters.files` (YAML documents).
The engine's ports over the cluster: :mod:`~meshctl.adapters.istio` (traffic in a
VirtualService), :mod:`~meshctl.adapters.workloads` (Deployments),
:mod:`~meshctl.adapters.status` (status and intents on the Rollout),
:mod:`~meshctl.adapters.events`.
Shared: :mod:`~meshctl.adapters.errors` (the one error tree),
:mod:`~meshctl.adapters.retries` (the one retry policy).

May: talk to servers and files, translate their failures into the error tree, retry what
is transient. May not: choose weights, phases or objects (those come from
:mod:`meshctl.domain`).
"""
