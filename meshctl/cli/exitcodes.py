"""Exit codes, the contract with CI pipelines (also in ``meshctl --help`` and README)."""

OK = 0  # success, rollout Healthy
ROLLED_BACK = 1  # rolled back or Degraded (or findings at/above --fail-on)
INVALID = 2  # bad usage or invalid spec
TIMED_OUT = 3  # timed out while waiting
PAUSED = 4  # paused, waiting for a human (with --wait)
UNREACHABLE = 5  # cannot reach the cluster or Prometheus
INTERNAL = 70  # a bug in meshctl (MESHCTL_DEBUG=1 shows the traceback)
INTERRUPTED = 130  # Ctrl-C, after stopping what the command started
TERMINATED = 143  # SIGTERM, likewise

HELP = """Exit codes: 0 success/Healthy, 1 rolled back or Degraded, 2 bad usage or invalid spec,
3 timed out while waiting, 4 paused waiting for a human, 5 cannot reach the cluster/Prometheus,
70 internal error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""
