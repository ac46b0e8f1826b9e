"""What ``meshctl controller run`` composes before the controller starts, from its flags:
the Kubernetes client and the way the weights the proxies apply are observed. A setting
that cannot work is a :class:`SetupError`, one line for the operator; the CLI only parses
flags and renders that line.
"""

from __future__ import annotations

from meshctl.adapters.errors import AdapterError
from meshctl.adapters.istiod import DataPlane, Istiod, IstiodDataPlane, StoredWeights
from meshctl.adapters.kube import Kube
from meshctl.adapters.rest import RestKube, controller_client


class SetupError(Exception):
    """The controller cannot start with these settings. ``unreachable``: the cluster could
    not be reached or used (as opposed to flags that contradict each other)."""

    def __init__(self, message: str, hint: str | None = None, *,
                 unreachable: bool = False) -> None:
        super().__init__(message)
        self.message, self.hint, self.unreachable = message, hint, unreachable


def data_plane(istiod_debug_url: str | None, istiod_token_file: str | None,
               trust_stored_weights: bool) -> DataPlane:
    """istiod's debug API when given; the stored weights only by the explicit choice."""
    if istiod_debug_url and trust_stored_weights:
        raise SetupError("--istiod-debug-url and --trust-stored-weights exclude each other: "
                         "drop one")
    if istiod_debug_url:
        return IstiodDataPlane(Istiod(istiod_debug_url, istiod_token_file))
    if trust_stored_weights:
        return StoredWeights()
    raise SetupError("--istiod-debug-url is required (the weights the proxies apply are "
                     "read there)", "or pass --trust-stored-weights to proceed on stored "
                     "weights, reported as 'stored, not observed'")


def cluster_client(kubeconfig: str | None, context: str | None) -> Kube | RestKube:
    """The controller's client (in a pod with no kubeconfig named: the pod's
    ServiceAccount)."""
    try:
        return controller_client(kubeconfig, context)
    except AdapterError as exc:
        raise SetupError(f"cannot reach the cluster: {exc}", unreachable=True) from exc
