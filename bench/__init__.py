"""Benchmarks against same-run baselines (`python -m bench [names...]`) and the unattended demo
(`python -m bench.demo`)."""
