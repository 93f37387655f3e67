"""Widgets flowtui's screens share."""
