"""flowtui's screens, one per file."""
