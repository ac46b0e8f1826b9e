"""The in-cluster controller: the imperative shell around the engine.

Watch Rollouts (and the Deployments and VirtualServices they use) with a periodic resync;
a work queue hands each key to one worker at a time; each pass is
:func:`meshctl.ops.lifecycle.reconcile_object` (observe -> decide -> act -> record); errors
back off per key. Only the holder of the ``coordination.k8s.io`` Lease works. ``/healthz``,
``/readyz`` and ``/metrics`` are served on one port.

May: run threads, talk to the API server through :mod:`meshctl.adapters`, keep caches.
May not: decide anything about a rollout (that is ``meshctl.domain.engine``).
"""
