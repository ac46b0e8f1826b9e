"""The pure core of meshctl.

Everything that decides lives here: the Rollout model and its validation, the phase table,
``decide()``, traffic arithmetic, analysis verdicts, and the desired Istio and policy objects.

May: compute on values it is given (``now`` included).
May not: do I/O, read a clock or the environment, import anything outside the standard library.
"""
