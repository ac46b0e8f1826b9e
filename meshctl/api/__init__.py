"""meshctl.api."""
