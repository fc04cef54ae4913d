"""The generator's two helm modes, the one list HELM_MODE (settings), `helmMode` (autopilot.yaml) and
`python -m core.generate --helm-mode` accept: `rendered` runs `helm template`; `helmrelease` writes Flux
HelmRelease objects."""

HELM_MODES = ("rendered", "helmrelease")
