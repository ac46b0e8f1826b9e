"""meshctl.ops."""
