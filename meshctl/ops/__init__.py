"""Use-cases shared by the CLI, the gRPC API and the controller; each front-end is a few
lines over one of these.

Reconciling: :mod:`~meshctl.ops.reconcile` (the one pass: observe, measure, decide, act,
record), :mod:`~meshctl.ops.lifecycle` (a Rollout object's: finalizer, validation, policies,
the pass, finalization), :mod:`~meshctl.ops.local` (``rollout run`` on the local mesh, its
state in :mod:`~meshctl.ops.state`).
Steering: :mod:`~meshctl.ops.rollouts` (where rollouts are: the cluster, a local run) over
:mod:`~meshctl.ops.views`, :mod:`~meshctl.ops.history`, :mod:`~meshctl.ops.start` (start,
apply, undo), :mod:`~meshctl.ops.intents` and :mod:`~meshctl.ops.wait`; failures in
:mod:`~meshctl.ops.failures`, the CLI's client in :mod:`~meshctl.ops.connect`.
Plans (what a command would write, writing nothing): :mod:`~meshctl.ops.rollout_plan`,
:mod:`~meshctl.ops.policies` (which also converges and audits policies).

May: read and write through :mod:`meshctl.adapters`, run the local mesh.
May not: decide (that is :mod:`meshctl.domain`), or parse command lines and render.
"""
