"""meshctl.cli."""
