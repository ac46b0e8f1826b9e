"""The label, annotation and finalizer keys meshctl puts on objects: one module, so each
key has one spelling (tests spell them out literally: they are a contract with users).

Labels:
    ``meshctl.io/track``            stable | canary, on the pods of each version
    ``meshctl.io/revision``         the pod template's hash, on the pods of each version
    ``meshctl.io/rollout``          the Rollout an object meshctl created belongs to
    ``app.kubernetes.io/managed-by: meshctl``   on every object meshctl created
    ``app.kubernetes.io/part-of: meshctl``      on meshctl's CRDs

Annotations:
    ``meshctl.io/intent-<action>``  a user intent's id (:mod:`meshctl.domain.intents`)
    ``meshctl.io/original-spec``    a borrowed object's spec as found, restored on delete
                                    (one record for every Rollout on its routes)
    ``meshctl.io/original-tls``     a DestinationRule's TLS settings as found
    ``meshctl.io/routes``           on a route object: which Rollout manages each of its
                                    routes (JSON, route name -> Rollout name)
    ``meshctl.io/spec-hash``        the hash of the spec meshctl last wrote (drift check)
    ``meshctl.io/previous-template`` the pod template a start replaced (for undo)
    ``meshctl.io/started-by``       who started the rollout (``meshctl rollout start``)
    ``meshctl.io/actor-<action>``   who last asked for an action, when, why (the audit trail)
    ``approval.meshctl.io/<hash>``  one approver's approval (:mod:`meshctl.domain.release_gates`)

Finalizer: ``meshctl.io/cleanup`` (a deleted Rollout gives back what meshctl changed).
"""

from __future__ import annotations

TRACK = "meshctl.io/track"
REVISION = "meshctl.io/revision"
ROLLOUT = "meshctl.io/rollout"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "meshctl"  # the value of MANAGED_BY on what meshctl created
PART_OF = "app.kubernetes.io/part-of"

INTENT_PREFIX = "meshctl.io/intent-"
ORIGINAL_SPEC = "meshctl.io/original-spec"
ORIGINAL_TLS = "meshctl.io/original-tls"
ROUTES = "meshctl.io/routes"
SPEC_HASH = "meshctl.io/spec-hash"
PREVIOUS_TEMPLATE = "meshctl.io/previous-template"
STARTED_BY = "meshctl.io/started-by"
ACTOR_PREFIX = "meshctl.io/actor-"
APPROVAL_PREFIX = "approval.meshctl.io/"

FINALIZER = "meshctl.io/cleanup"
