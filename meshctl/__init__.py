"""meshctl: progressive delivery for service meshes.

Layers (enforced by import-linter, see pyproject.toml):
``cli | api | controller`` -> ``ops`` -> ``localmesh`` -> ``adapters`` -> ``domain``.
``domain`` is pure: standard library only, no I/O, no clock.
"""

__version__ = "0.1.0"
