"""Kubernetes manifests from a Fabrikate HLD, natively in Python (no `fab`): `generate` renders, `write_generation`
writes into a manifest repository working tree.

Kept from Fabrikate: component.yaml/json trees (`type` component|static|helm, `generator` alias; `method`
local|git|helm), config layering (first environment named wins, environment over common, config higher in the tree
wins, inlined helm/static subcomponents take only `parent.subcomponents[name]`, first namespace set wins),
`injectNamespace`, `disabled`, one `<env>/<logical path>/<name>.yaml` file per component visited, git sources that
`fab install` vendored into the HLD (`components/<name>/`, `helm_repos/<name>/`) read from there without fetching,
and `helm template <component name>` as the release name (also the HelmRelease `releaseName`).

Deliberate differences:
- one top-level folder per environment; `"a b"` layers environment a over b into folder `a-b` (Bedrock FAB_ENVS);
- `hooks` are refused: they are shell lines from the HLD repository, so running them would let any pull request
  execute code on the generator's host;
- `method: http` is refused: generation downloads nothing but git sources (and Helm repositories in rendered mode);
  commit the manifest to the HLD instead;
- every path a component names, and every file read or followed through a symlink, must stay inside the checkout it
  came from (the HLD, or the cached clone of a git source);
- lists in config are taken whole from the first layer that sets them (Fabrikate appended them), and
  `disabled: false` in a higher layer re-enables a component;
- values are typed as Helm reads them (go-yaml v2: `yes` is true, `0644` is octal);
- Helm output with no document is an error (Fabrikate issue #288), and so are two components writing one file;
- `helm_mode="helmrelease"` writes Flux v2 HelmRelease objects with their GitRepository/HelmRepository instead of
  running Helm; `helm dependency update` is never run (vendor chart dependencies for rendered mode).
"""
from core.rules.helm_modes import HELM_MODES

from .errors import GenerationError
from .output import GeneratedFile, Generation, write_generation
from .walk import generate

__all__ = ["GeneratedFile", "Generation", "GenerationError", "HELM_MODES", "generate", "write_generation"]
