"""TTFS training: datasets as spike times, the software trainer (``train_software``), perf settings."""
