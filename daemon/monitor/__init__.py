"""What flowd tells the tools sysadmins already run: Prometheus metrics."""
