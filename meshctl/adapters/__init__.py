"""meshctl.adapters."""
