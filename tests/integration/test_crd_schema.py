"""The CRD schema (generated from the spec classes) refuses on the real API server what
would turn into an "any source" ALLOW policy, so no client can store it."""

from __future__ import annotations

import pytest

from meshctl.adapters.errors import Invalid
from meshctl.adapters.kube import Kube
from meshctl.domain.spec import GROUP, VERSION

from .cluster_world import rollout

pytestmark = pytest.mark.kube


@pytest.mark.parametrize("allow, field", [
    ([{"methods": ["GET"]}], "from"),
    ([{"from": []}], "from"),
    ([{"from": [{}]}], "from[0]"),
])
def test_the_api_server_refuses_an_allow_rule_without_callers(kube, namespace, allow, field):
    admin = Kube.from_kubeconfig(kube.kubeconfig_path)
    doc = rollout(namespace, "web:1", [{"setWeight": 20}], security={"allow": allow})
    with pytest.raises(Invalid) as err:
        admin.create(GROUP, VERSION, namespace, "rollouts", doc)
    assert f"spec.security.allow[0].{field}" in str(err.value)
    good = rollout(namespace, "web:1", [{"setWeight": 20}],
                   security={"allow": [{"from": [{"namespace": "web"}]}]})
    admin.create(GROUP, VERSION, namespace, "rollouts", good)
