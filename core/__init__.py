"""gitops-autopilot's core: the domain and its adapters, with no import of azure.functions.

Layers, inward first: `model` (shapes) and `rules` (pure decisions) know nothing of I/O; `adapters` are the edges
(storage, git, Azure DevOps, Flux); `workers` and `ops` use both; `generate` is the Fabrikate-compatible generator;
`wiring` builds everything once per process from `settings`."""
__version__ = "0.1.0"

__all__ = ["adapters", "errors", "generate", "model", "ops", "rules", "settings", "telemetry", "wiring", "workers"]
