"""Benchmarks against same-run baselines (`python -m bench [names...]`) and the unattended demo
(`python -m bench.demo`)."""

__all__: list[str] = []   # run as `python -m bench`; nothing here is imported by the app
