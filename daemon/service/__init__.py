"""flowd as a systemd service: logging to the journal."""
