"""meshctl.localmesh."""
