"""The embedded local mesh: a real Envoy configured by meshctl's own xDS server.

Used by ``meshctl demo``, ``meshctl rollout run --mesh local``, the e2e tests and the
benchmarks. The entry point is :class:`meshctl.localmesh.mesh.LocalMesh`; its parts:

- ``xds``: the ADS server (gRPC, state of the world, ACK/NACK per type URL);
- ``resources``: TrafficSplit <-> Envoy v3 Listener/RouteConfiguration/Cluster, both ways;
- ``envoy``: bootstrap, process and admin API of one Envoy;
- ``router``: ``LocalTrafficRouter``, the TrafficRouter port over the two above;
- ``app`` / ``load``: the sample app (faults on demand) and the load generator;
- ``prometheus``: the system Prometheus, scraping Envoy every second;
- ``procs``: child processes in their own process groups, waiting helpers.

May: start and stop local processes, bind loopback ports, speak gRPC/HTTP to them.
May not: decide anything (weights, phases, verdicts come from ``meshctl.domain``).
Importing this package is cheap: the protobuf and gRPC modules load with ``xds``/``router``.
"""
