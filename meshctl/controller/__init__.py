"""meshctl.controller."""
