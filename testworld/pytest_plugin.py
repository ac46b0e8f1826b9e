"""pytest fixtures of the test world's Kubernetes API server.

``kube`` (session): a running :class:`testworld.kube.KubeWorld`, started the first time a test
asks for it and stopped at the end of the session. ``namespace``: a fresh namespace for one
test (with its ``default`` ServiceAccount), deleted afterwards. ``cluster`` (session): the same
world with its cluster tier running (:class:`testworld.cluster.ClusterTier`: controller-manager,
scheduler and ``MESHCTL_HOLLOW_NODES`` hollow nodes, default 2), started the first time a test
asks for it; from then on the world's Deployments get real Pods. Tests using it are marked
``cluster``.

If the world cannot start (binary missing: run ``make testenv``), tests that need it are
skipped with the reason, except when ``MESHCTL_REQUIRE_KUBE=1`` (CI): then they fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from testworld.cluster import ClusterTier
from testworld.istio import IstioWorld
from testworld.kube import KubeWorld, WorldUnavailable


def _unavailable(reason: str) -> None:
    if os.environ.get("MESHCTL_REQUIRE_KUBE") == "1":
        pytest.fail(f"the Kubernetes test world is required here: {reason}", pytrace=False)
    pytest.skip(f"no Kubernetes test world: {reason}")


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeWorld]:
    world = KubeWorld()
    try:
        world.start()
    except WorldUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield world
    finally:
        world.stop()


@pytest.fixture(scope="session")
def cluster(kube: KubeWorld) -> Iterator[KubeWorld]:
    tier = ClusterTier(kube, nodes=int(os.environ.get("MESHCTL_HOLLOW_NODES", "2")))
    try:
        tier.start()
    except WorldUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield kube
    finally:
        tier.stop()


@pytest.fixture
def namespace(kube: KubeWorld, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = kube.create_namespace(f"{slug}-{os.urandom(3).hex()}")
    yield name
    kube.delete_namespace(name)


@pytest.fixture(scope="session")
def istio(kube: KubeWorld) -> Iterator[IstioWorld]:
    """istiod and an Envoy gateway it programs, on the session's API server
    (testworld/istio.py). Missing istiod: skipped, or a failure in CI (either
    MESHCTL_REQUIRE_KUBE=1 or MESHCTL_REQUIRE_SERVERS=1)."""
    world = IstioWorld(kube)
    try:
        world.start()
    except WorldUnavailable as exc:
        if os.environ.get("MESHCTL_REQUIRE_SERVERS") == "1":
            pytest.fail(f"istiod is required here: {exc}", pytrace=False)
        _unavailable(f"istiod: {exc}")
    try:
        yield world
    finally:
        world.stop()
