"""First sight of a stable Deployment meshctl has not labelled: which version it runs, and
what meshctl writes into it (its own template, labelled; never the Rollout's). And which
Deployments at the canary's and baseline's names are meshctl's to change, and which Rollout
a stable Deployment is claimed by."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshctl.domain.keys import REVISION, TRACK
from meshctl.domain.workloads import (
    claimant,
    claimed,
    first_unlike,
    foreign_workloads,
    held_elsewhere,
    labelled_in_place,
    promoted_template,
    running_revision,
    sets_alike,
    stable_state,
    template_revision,
)


def template(image: str, **container: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image, **container}]}}


def stored(image: str, **container: Any) -> dict[str, Any]:
    """``template(image)`` as the API server keeps it: with its defaults filled in."""
    out = template(image, imagePullPolicy="IfNotPresent", resources={},
                   terminationMessagePath="/dev/termination-log", **container)
    out["spec"].update(restartPolicy="Always", dnsPolicy="ClusterFirst",
                       schedulerName="default-scheduler", securityContext={})
    return out


def deployment(pod_template: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": 2, "template": pod_template},
            "status": {"observedGeneration": 1, "updatedReplicas": 2, "readyReplicas": 2}}


@pytest.mark.parametrize("wanted, found, alike", [
    ({"image": "web:1"}, {"image": "web:1", "imagePullPolicy": "IfNotPresent"}, True),
    ({"image": "web:2"}, {"image": "web:1", "imagePullPolicy": "IfNotPresent"}, False),
    ({"env": [{"name": "A", "value": "1"}]}, {"env": [{"name": "A", "value": "1"}]}, True),
    ({"env": [{"name": "A", "value": "1"}]}, {"env": []}, False),
    ({"args": ["a"]}, {"args": ["a", "b"]}, False),  # a list compares at its length
    ({"cpu": "0.5"}, {"cpu": "500m"}, False),  # not a resource list: unlike (a canary)
    ({"limits": {"cpu": "0.5", "memory": "1Gi"}}, {"limits": {"cpu": "500m",
                                                             "memory": "1024Mi"}}, True),
    ({"requests": {"cpu": "1"}}, {"requests": {"cpu": "1100m"}}, False),
    ({"emptyDir": {"sizeLimit": "1024Mi"}}, {"emptyDir": {"sizeLimit": "1Gi"}}, True),
    ({"limits": {"cpu": 2}}, {"limits": {"cpu": "2"}}, True),
    ({"limits": {"cpu": "1e999999999"}}, {"limits": {"cpu": "1"}}, False),
    ({"port": 80}, {"port": "80"}, False),
    ({}, {"anything": 1}, True),
])
def test_sets_alike_compares_what_the_wanted_side_sets(wanted, found, alike):
    assert sets_alike(wanted, found) is alike


def test_a_deployment_running_the_rollouts_template_runs_its_revision():
    """The stored template has the server's defaults: still the Rollout's revision."""
    assert running_revision(stored("web:1"), template("web:1")) == template_revision(
        template("web:1"))


def test_a_deployment_running_another_image_runs_another_revision():
    found = running_revision(stored("web:1"), template("web:2"))
    assert found != template_revision(template("web:2"))
    assert found == template_revision(stored("web:1"))


def test_first_sight_reports_the_revision_the_unlabelled_stable_runs():
    rollout_template = template("web:2")
    state = stable_state(deployment(stored("web:1")), rollout_template)
    assert state.revision == template_revision(stored("web:1"))
    assert (state.replicas, state.ready) == (2, 2)
    same = stable_state(deployment(stored("web:2")), rollout_template)
    assert same.revision == template_revision(rollout_template)


def test_a_labelled_stable_is_read_by_its_label_whatever_it_runs():
    labelled = promoted_template(template("web:1"))
    state = stable_state(deployment(labelled), template("web:9"))
    assert state.revision == labelled["metadata"]["labels"][REVISION]


def test_labelling_in_place_changes_only_the_labels():
    found = stored("web:1", env=[{"name": "MODE", "value": "blue"}])
    before = copy.deepcopy(found)
    out = labelled_in_place(found, "abc123")
    assert found == before  # not changed in place
    assert out["spec"] == found["spec"]
    assert out["metadata"]["labels"] == {"app": "web", TRACK: "stable", REVISION: "abc123"}


def named(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {}}


def test_only_deployments_meshctl_made_for_the_rollout_are_its_own():
    mine = named("web-canary", **{"app.kubernetes.io/managed-by": "meshctl",
                                  "meshctl.io/rollout": "web"})
    other_rollout = named("web-canary", **{"app.kubernetes.io/managed-by": "meshctl",
                                           "meshctl.io/rollout": "shop"})
    users = named("web-canary", app="web")
    assert list(foreign_workloads("web", [None, mine])) == []
    problems = list(foreign_workloads("web", [users, other_rollout]))
    assert [p.path for p in problems] == ["spec.workloadRef.name"] * 2
    assert "Deployment web-canary exists and is not made by meshctl" in problems[0].message
    assert "made by meshctl for Rollout 'shop'" in problems[1].message
    assert "rename that Deployment" in problems[0].message


def test_a_claim_is_a_label_on_the_deployment_alone():
    found = deployment(stored("web:1"))
    found["metadata"]["labels"] = {"app": "web"}
    assert claimant(found) is None and claimant(None) is None
    mine = claimed(found, "web")
    assert claimant(mine) == "web"
    assert mine["metadata"]["labels"] == {"app": "web", "meshctl.io/rollout": "web"}
    assert mine["spec"] == found["spec"]  # the Pods are not replaced
    assert found["metadata"]["labels"] == {"app": "web"}  # the one read is not changed
    assert claimant(claimed(mine, "shop")) == "shop"
    assert claimed(mine, None)["metadata"]["labels"] == {"app": "web"}


def test_a_deployment_held_by_another_rollout_names_the_field_and_the_way_out():
    problem = held_elsewhere("web-b", "web", "web")
    assert problem.path == "spec.workloadRef.name"
    assert "Deployment web is managed by Rollout 'web'" in problem.message
    assert "delete it before Rollout 'web-b' takes the Deployment over" in problem.message


def test_the_first_field_unlike_is_named_with_both_values():
    wanted = template("web:2")["spec"]
    assert first_unlike(wanted, stored("web:3")["spec"], "spec.template.spec") == \
        "spec.template.spec.containers[0].image: web:3, not web:2"
    assert first_unlike({"a": {"b": 1}}, {"a": {}}) == "a.b: not set"
    assert first_unlike({"a": [1]}, {"a": [1, 2]}) == "a: 2 items, not 1"
    # only an image is shown: another value may be a secret
    env = {"env": [{"name": "TOKEN", "value": "s3cret-new"}]}
    found = first_unlike(env, {"env": [{"name": "TOKEN", "value": "s3cret-old"}]}, "spec")
    assert found == "spec.env[0].value differs"
    assert first_unlike(wanted, stored("web:2")["spec"]) is None


def test_a_stable_labelled_at_the_rollouts_revision_reports_a_template_edited_by_hand():
    rollout_template = template("web:2")
    ours = deployment(labelled_in_place(stored("web:2"), template_revision(rollout_template)))
    assert stable_state(ours, rollout_template).edited == ""
    by_hand = copy.deepcopy(ours)
    by_hand["spec"]["template"]["spec"]["containers"][0]["image"] = "web:3"
    state = stable_state(by_hand, rollout_template)
    assert state.revision == template_revision(rollout_template)  # what the label says
    assert state.edited == "spec.template.spec.containers[0].image: web:3, not web:2"
    # mid-release the stable revision's own template is not at hand: nothing is compared
    assert stable_state(by_hand, template("web:4")).edited == ""
