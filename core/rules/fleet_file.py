r"""``fleet.yaml``: the tenants one deployment serves, parsed and validated (pure: bytes in, a Fleet or an error out).

Schema::

    tenants:
      - name: contoso                 # a slug (a-z, 0-9, '-'; up to 63), unique in the file
        hld: {url: https://dev.azure.com/contoso/gitops/_git/hld, branch: main}        # optional
        manifests: {url: https://dev.azure.com/contoso/gitops/_git/manifests, branch: main}
        writeMode: pull-request       # direct | pull-request (default direct); pull-request needs azureDevOps
        azureDevOps: {org: https://dev.azure.com/contoso, project: gitops}
        images: ["contosoacr.azurecr.io/*"]   # globs on host/repository (default: every image)
        credentials: {patSetting: CONTOSO_AZDO_PAT, expires: 2027-03-31}   # or {identity: managed} (the default)
        paused: false
        flux:                         # optional: this tenant's Flux events hook, POST /api/hooks/flux/<name>
          secretSetting: CONTOSO_FLUX_KEY     # the app setting holding the generic-hmac Provider's key
          clusters: [{name: prod-eastus, env: prod}]   # for `setup`'s Provider/Alert YAML (env optional)
          receivers:                  # optional: the Flux Receivers woken after ITS manifest commits (only its)
            - {cluster: prod-eastus, env: prod, url: "https://flux-webhook.prod.contoso.example/hook/<digest>",
               secretSetting: CONTOSO_RECEIVER_PROD}   # the app setting holding that Receiver's token

Without ``hld`` the tenant uses the light-weight flow (images bumped straight in ``manifests``); ``branch`` defaults
to ``main``. Credentials are named, never written: ``patSetting`` is the NAME of an app setting (a Key Vault
reference in Azure) holding the tenant's PAT, read with ``Settings.app_setting``.

Refused, each as ``FleetFileError("fleet.yaml:<line>: <what is wrong>")``: unknown keys, wrong types, a name that is
not a slug or is used twice, a repository named by two tenants (or by one tenant twice, or the fleet repository
itself), URLs that carry credentials, a query or a fragment, URLs that are not https/ssh/file (plain http only for
localhost: it would carry the tenant's credentials in clear), pull requests without ``azureDevOps``, two tenants
sharing one ``patSetting``, ``flux.secretSetting`` or receiver ``secretSetting`` (or one tenant using one setting for
two of them: one tenant's credentials and keys are never used for another's), such a setting naming one of the
service's own settings, a receiver entry the ``FLUX_RECEIVERS`` rules refuse (core.rules.flux_receiver_rules: https
only, plain http for loopback; a ``/hook/`` path; no credentials, query or fragment), one receiver URL or cluster
named twice (in one tenant, or a URL in two tenants), and
anything in the file that looks like a secret value (a PAT, a token, a key, a password) — those messages never
repeat the value.

The file is hostile input: at most ``MAX_FLEET_BYTES``, UTF-8, YAML read through ``core.rules.repo_yaml`` (bounded
alias expansion), at most ``MAX_TENANTS`` tenants.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from datetime import date, datetime
from typing import Any, Iterator
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.scalarbool import ScalarBoolean

from core.errors import Permanent
from core.model.fleet import Fleet, FluxCluster, FluxReceiverRef, RepoRef, Tenant
from core.model.payloads import normalize_repo_url
from core.rules import flux_receiver_rules
from core.rules.repo_yaml import RepoYamlError, check_size, describe_value, load_one, node_line

__all__ = ["FLEET_FILE", "FleetFileError", "MAX_FLEET_BYTES", "MAX_TENANTS", "parse_fleet"]

FLEET_FILE = "fleet.yaml"
MAX_FLEET_BYTES = 512 * 1024
MAX_TENANTS = 500
WRITE_MODES = ("direct", "pull-request")

_TOP_KEYS = ("tenants",)
_TENANT_KEYS = ("name", "hld", "manifests", "writeMode", "azureDevOps", "images", "credentials", "paused", "flux")
_FLUX_KEYS = ("secretSetting", "clusters", "receivers")
_FLUX_CLUSTER_KEYS = ("name", "env")
_CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")     # as the Flux events' metadata.cluster
_ENVS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(,[A-Za-z0-9_][A-Za-z0-9._-]{0,99})*")
MAX_FLUX_CLUSTERS = 100
MAX_FLUX_RECEIVERS = 100
_REPO_KEYS = ("url", "branch")
_AZDO_KEYS = ("org", "project")
_CREDENTIAL_KEYS = ("patSetting", "expires", "identity")
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_IMAGE_GLOB = re.compile(r"[a-z0-9._\-/:*?\[\]!]{1,256}")
_PROJECT_FORBIDDEN = re.compile(r"[\\/:*?\"<>|;#$*{},+=\[\]\x00-\x1f\x7f]")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
# Settings of the service itself: a tenant naming one would send the deployment's own secret to the tenant's hosts.
_OWN_SETTINGS = re.compile(r"(?i)(AzureWebJobs.*|WEBSITE_.*|FUNCTIONS_.*|APPLICATIONINSIGHTS_.*|AZDO_PAT|"
                           r"AZDO_WEBHOOK_SECRET|ACR_WEBHOOK_SECRET|FLUX_WEBHOOK_SECRET|FLUX_RECEIVERS|FUNCTIONS_KEY)")
_SECRET_KEYS = re.compile(r"(?i)(pat|token|accesstoken|password|passwd|pwd|secret|clientsecret|apikey|key|"
                          r"accesskey|privatekey|connectionstring|sas)")
# What secret values look like, searched on every line of the text (comments too) and in every string value.
_SECRET_SHAPES = (
    ("an Azure DevOps PAT", re.compile(r"(?<![A-Za-z0-9])(?=[a-z2-7]*[2-7])[a-z2-7]{52}(?![A-Za-z0-9])")),
    ("an Azure DevOps PAT", re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{84}(?![A-Za-z0-9])")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY")),
    ("a connection string or SAS", re.compile(r"(?i)\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|sig|"
                                              r"password|pwd)=")),
    ("a base64 key", re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40,}={1,2}")),
)
_TOKEN = re.compile(r"[A-Za-z0-9_+-]{32,}")
_LOWER_RUN = re.compile(r"[a-z0-9]{52,}")   # a PAT glued to other letters; hex runs (digests) are let through
_HEX = frozenset("0123456789abcdef")


class FleetFileError(Permanent, ValueError):
    """fleet.yaml refused: `fleet.yaml:<line>: <what is wrong>`, one line, never a secret-looking value."""

    def __init__(self, line: int | None, problem: str, file: str = FLEET_FILE) -> None:
        self.file, self.line, self.problem = file, line, problem
        super().__init__(f"{file}:{line}: {problem}" if line else f"{file}: {problem}")


def parse_fleet(text: bytes, source: str, *, fleet_repo_url: str = "") -> Fleet:
    """The Fleet `text` defines; `source` says where it came from (e.g. `<fleet repo url>@<commit>`) and becomes
    `Fleet.source`. `fleet_repo_url`: the repository holding fleet.yaml, which no tenant may name."""
    try:
        check_size(len(text), FLEET_FILE, MAX_FLEET_BYTES)
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FleetFileError(text[:exc.start].count(b"\n") + 1, "is not UTF-8 text") from None
        _refuse_secret_lines(decoded)
        data = load_one(decoded, FLEET_FILE, yaml=_yaml(), max_bytes=MAX_FLEET_BYTES)
    except RepoYamlError as exc:
        raise FleetFileError(exc.line, exc.problem) from None
    if data is None:
        raise FleetFileError(None, "is empty: it must list the tenants (tenants: [...])")
    _refuse_secret_values(data)
    return _Parser(fleet_repo_url).fleet(data, source)


class _Constructor(RoundTripConstructor):
    """Round trip, except that an impossible date (`2027-02-30`) stays a string, so the field that holds it is
    refused with its own line instead of the whole document with line 1."""

    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        try:
            return super().construct_yaml_timestamp(node, values)
        except ValueError:
            return self.construct_scalar(node)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    return yaml


# ---------------------------------------------------------------------------------------------------- secrets


def _secret_shape(value: str) -> str | None:
    for what, pattern in _SECRET_SHAPES:
        if pattern.search(value):
            return what
    for run in _LOWER_RUN.findall(value):
        if sum(c.isdigit() for c in run) >= 4 and not set(run) <= _HEX:
            return "an Azure DevOps PAT"
    for token in _TOKEN.findall(value):
        if _random_looking(token):
            return "a random token (a key or password?)"
    return None


def _random_looking(token: str) -> bool:
    """Upper, lower and several digits, spread like random text: a generated credential, not a name."""
    if not (any(c.isupper() for c in token) and any(c.islower() for c in token)
            and sum(c.isdigit() for c in token) >= 3):
        return False
    counts = Counter(token)
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return entropy >= 4.0


def _secret_error(line: int, what: str) -> FleetFileError:
    return FleetFileError(line, f"holds what looks like a secret value ({what}); fleet.yaml names credentials "
                                "only by reference: put the value in an app setting (a Key Vault reference in "
                                "Azure) and give its name as credentials.patSetting")


def _refuse_secret_lines(text: str) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        what = _secret_shape(line) if line.strip() else None
        if what:
            raise _secret_error(number, what)


def _walk(node: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(container, key or index, value) of every entry, iteratively (no recursion on hostile nesting)."""
    stack = [node]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        items = current.items() if isinstance(current, CommentedMap) else enumerate(current)
        for key, value in items:
            yield current, key, value
            if isinstance(value, (CommentedMap, CommentedSeq)):
                stack.append(value)


def _refuse_secret_values(data: Any) -> None:
    """Values built by YAML escapes or folding do not show on one line of the text: check every string too, and
    every key named like a secret wherever it is."""
    if not isinstance(data, (CommentedMap, CommentedSeq)):
        return
    for container, key, value in _walk(data):
        line = node_line(container, key)
        if isinstance(container, CommentedMap) and isinstance(key, str):
            if _SECRET_KEYS.fullmatch(key):
                raise FleetFileError(line, f"key {key!r} would hold a secret; fleet.yaml names credentials only by "
                                           "reference (credentials.patSetting: the NAME of an app setting)")
            what = _secret_shape(key)
            if what:
                raise _secret_error(line, what)
        if isinstance(value, str):
            what = _secret_shape(value)
            if what:
                raise _secret_error(line, what)


# ---------------------------------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, fleet_repo_url: str) -> None:
        self.fleet_repo = _repo_key(fleet_repo_url) if fleet_repo_url else ""

    @staticmethod
    def mapping(node: Any, where: str, allowed: tuple[str, ...], line: int) -> CommentedMap:
        if not isinstance(node, CommentedMap):
            raise FleetFileError(line, f"{where} must be a mapping, got {describe_value(node)}")
        for key in node:
            if key not in allowed:
                shown = repr(key) if isinstance(key, str) else describe_value(key)
                raise FleetFileError(node_line(node, key), f"unknown key {shown[:80]} in {where} "
                                                       f"(allowed: {', '.join(allowed)})")
        return node

    @staticmethod
    def string(node: CommentedMap, key: str, where: str, limit: int = 2000) -> str:
        value = node[key]
        if not isinstance(value, str) or not value.strip():
            raise FleetFileError(node_line(node, key), f"{where}.{key} must be a non-empty string, got {describe_value(value)}")
        if len(value) > limit:
            raise FleetFileError(node_line(node, key), f"{where}.{key} is longer than {limit} characters")
        return str(value)

    def fleet(self, data: Any, source: str) -> Fleet:
        top = self.mapping(data, "the top level", _TOP_KEYS, node_line(data))
        if "tenants" not in top:
            raise FleetFileError(node_line(top), "the top level needs 'tenants': the list of tenants")
        items = top["tenants"]
        line = node_line(top, "tenants")
        if not isinstance(items, CommentedSeq):
            raise FleetFileError(line, f"tenants must be a list of mappings, got {describe_value(items)}")
        if not items:
            raise FleetFileError(line, "tenants is empty: an empty fleet would ignore every image push "
                                       "(pause a tenant with paused: true instead)")
        if len(items) > MAX_TENANTS:
            raise FleetFileError(line, f"tenants lists {len(items)} tenants; the limit is {MAX_TENANTS}")
        tenants: list[Tenant] = []
        names: dict[str, int] = {}
        repos: dict[str, str] = {}      # normalised repository -> "tenant <name>"
        pat_settings: dict[str, tuple[str, str]] = {}   # every credential and key setting: (tenant, key)
        self.receiver_urls: dict[str, str] = {}         # receiver URL -> its tenant
        for index, item in enumerate(items):
            tenant = self.tenant(item, f"tenants[{index}]", node_line(items, index), names, repos, pat_settings)
            tenants.append(tenant)
        return Fleet(tuple(tenants), source=source)

    def tenant(self, item: Any, where: str, line: int, names: dict[str, int], repos: dict[str, str],
               pat_settings: dict[str, tuple[str, str]]) -> Tenant:
        node = self.mapping(item, where, _TENANT_KEYS, line)
        if "name" not in node:
            raise FleetFileError(line, f"{where} needs a 'name'")
        name = self.string(node, "name", where, 200)
        name_line = node_line(node, "name")
        if not _SLUG.fullmatch(name):
            raise FleetFileError(name_line, f"{where}.name {name[:80]!r} is not a slug (lower-case letters, digits "
                                            "and '-', up to 63, starting and ending with a letter or digit)")
        if name in names:
            raise FleetFileError(name_line, f"{where}.name {name!r} is already the name of the tenant on line "
                                            f"{names[name]}")
        names[name] = name_line
        where = f"tenant {name}"
        if "manifests" not in node:
            raise FleetFileError(line, f"{where} needs 'manifests' (and 'hld' unless it uses the light-weight flow)")
        hld = self.repo(node, "hld", where) if "hld" in node else None
        manifests = self.repo(node, "manifests", where)
        if hld is not None and _repo_key(hld.url) == _repo_key(manifests.url) and hld.branch == manifests.branch:
            raise FleetFileError(max(node_line(node, "hld"), node_line(node, "manifests")),
                                 f"{where}: hld and manifests are the same repository and branch")
        for key, ref in (("hld", hld), ("manifests", manifests)):
            if ref is None:
                continue
            repo = _repo_key(ref.url)
            ref_line = node_line(node[key], "url")
            if self.fleet_repo and repo == self.fleet_repo:
                raise FleetFileError(ref_line, f"{where}.{key} is the fleet repository itself: a tenant must not "
                                               "be able to change the fleet's definition")
            owner = repos.get(repo)
            if owner is not None and owner != name:
                raise FleetFileError(ref_line, f"{where}.{key} is already tenant {owner}'s repository: tenants "
                                               "are isolated, each repository belongs to one tenant")
            repos[repo] = name
        write_mode = "direct"
        if "writeMode" in node:
            write_mode = self.string(node, "writeMode", where, 100)
            if write_mode not in WRITE_MODES:
                raise FleetFileError(node_line(node, "writeMode"), f"{where}.writeMode {write_mode[:40]!r} is not one "
                                                               f"of {', '.join(WRITE_MODES)}")
        org, project = self.azure_devops(node, where) if "azureDevOps" in node else ("", "")
        if write_mode == "pull-request" and not org:
            raise FleetFileError(node_line(node, "writeMode"), f"{where}.writeMode pull-request needs azureDevOps "
                                                           "{org, project} (the pull requests are made there)")
        images = self.images(node, where) if "images" in node else ("*",)
        pat_setting, expires = (self.credentials(node, where, pat_settings, name) if "credentials" in node
                                else ("", None))
        paused = False
        if "paused" in node:
            if not isinstance(node["paused"], (bool, ScalarBoolean)):
                raise FleetFileError(node_line(node, "paused"), f"{where}.paused must be true or false, got "
                                                            f"{describe_value(node['paused'])}")
            paused = bool(node["paused"])
        flux_setting, clusters, receivers = (self.flux(node, where, pat_settings, name) if "flux" in node
                                             else ("", (), ()))
        return Tenant(name, manifests=manifests, hld=hld, write_mode=write_mode, azdo_org_url=org,
                      azdo_project=project, images=images, pat_setting=pat_setting, paused=paused,
                      pat_expires=expires, flux_secret_setting=flux_setting, flux_clusters=clusters,
                      flux_receivers=receivers)

    def repo(self, node: CommentedMap, key: str, where: str) -> RepoRef:
        where = f"{where}.{key}"
        repo = self.mapping(node[key], where, _REPO_KEYS, node_line(node, key))
        if "url" not in repo:
            raise FleetFileError(node_line(node, key), f"{where} needs a 'url'")
        url = _url(self.string(repo, "url", where), f"{where}.url", node_line(repo, "url"))
        branch = "main"
        if "branch" in repo:
            branch = self.string(repo, "branch", where, 200)
            if (not _BRANCH.fullmatch(branch) or branch.startswith(("-", "/", "refs/")) or ".." in branch
                    or branch.endswith(("/", ".lock", "."))):
                raise FleetFileError(node_line(repo, "branch"), f"{where}.branch {branch[:80]!r} is not a plain branch "
                                                            "name (e.g. main)")
        return RepoRef(url, branch)

    def azure_devops(self, node: CommentedMap, where: str) -> tuple[str, str]:
        where = f"{where}.azureDevOps"
        azdo = self.mapping(node["azureDevOps"], where, _AZDO_KEYS, node_line(node, "azureDevOps"))
        for key in _AZDO_KEYS:
            if key not in azdo:
                raise FleetFileError(node_line(node, "azureDevOps"), f"{where} needs both 'org' and 'project'")
        org = _url(self.string(azdo, "org", where), f"{where}.org", node_line(azdo, "org"), schemes=("https",))
        project = self.string(azdo, "project", where, 64)
        if _PROJECT_FORBIDDEN.search(project) or project.startswith(("_", ".")) or project.endswith("."):
            raise FleetFileError(node_line(azdo, "project"), f"{where}.project {project!r} is not an Azure DevOps "
                                                         "project name")
        return org.rstrip("/"), project

    def images(self, node: CommentedMap, where: str) -> tuple[str, ...]:
        value = node["images"]
        line = node_line(node, "images")
        if not isinstance(value, CommentedSeq):
            raise FleetFileError(line, f"{where}.images must be a list of globs, got {describe_value(value)}")
        if not value:
            raise FleetFileError(line, f"{where}.images is empty: the tenant would take no image (leave images "
                                       "out for every image, or use paused: true)")
        globs: list[str] = []
        for index, item in enumerate(value):
            item_line = node_line(value, index)
            if not isinstance(item, str) or not _IMAGE_GLOB.fullmatch(item):
                raise FleetFileError(item_line, f"{where}.images[{index}] must be a glob on host/repository "
                                                "(lower-case letters, digits, . _ - / : and * ? [ ] !), got "
                                                f"{describe_value(item)}")
            if item in globs:
                raise FleetFileError(item_line, f"{where}.images lists {item!r} twice")
            globs.append(str(item))
        return tuple(globs)

    def setting_name(self, node: CommentedMap, key: str, where: str, taken: dict[str, tuple[str, str]],
                     name: str) -> str:
        """An app setting's name, refused when it is one of the service's own or another use's (`taken`: setting
        -> (tenant, key) of every credential and key setting named so far)."""
        setting = self.string(node, key, where, 200)
        line = node_line(node, key)
        if not _SETTING_NAME.fullmatch(setting):
            raise FleetFileError(line, f"{where}.{key} {setting[:60]!r} is not an app setting name (letters, digits "
                                       "and '_', up to 128)")
        if _OWN_SETTINGS.fullmatch(setting):
            raise FleetFileError(line, f"{where}.{key} {setting} is one of the service's own settings; give each "
                                       "tenant an app setting of its own")
        owner, use = taken.get(setting, ("", ""))
        if owner and owner != name:
            raise FleetFileError(line, f"{where}.{key} {setting} is already tenant {owner}'s: one tenant's "
                                       "credentials are never used for another")
        if owner:
            raise FleetFileError(line, f"{where}.{key} {setting} is already its {use}: one setting holds one secret")
        taken[setting] = (name, key)
        return setting

    def flux(self, node: CommentedMap, where: str, taken: dict[str, tuple[str, str]],
             name: str) -> tuple[str, tuple[FluxCluster, ...], tuple[FluxReceiverRef, ...]]:
        where = f"{where}.flux"
        flux = self.mapping(node["flux"], where, _FLUX_KEYS, node_line(node, "flux"))
        if "secretSetting" not in flux:
            raise FleetFileError(node_line(node, "flux"), f"{where} needs secretSetting (the name of the app setting "
                                                      "holding the key its Flux Provider signs events with)")
        setting = self.setting_name(flux, "secretSetting", where, taken, name)
        clusters: list[FluxCluster] = []
        if "clusters" in flux:
            value, line = flux["clusters"], node_line(flux, "clusters")
            if not isinstance(value, CommentedSeq):
                raise FleetFileError(line, f"{where}.clusters must be a list of {{name, env}}, got {describe_value(value)}")
            if len(value) > MAX_FLUX_CLUSTERS:
                raise FleetFileError(line, f"{where}.clusters lists {len(value)}; the limit is {MAX_FLUX_CLUSTERS}")
            for index, item in enumerate(value):
                at = f"{where}.clusters[{index}]"
                entry = self.mapping(item, at, _FLUX_CLUSTER_KEYS, node_line(value, index))
                if "name" not in entry:
                    raise FleetFileError(node_line(value, index), f"{at} needs a 'name'")
                cluster = self.string(entry, "name", at, 63)
                if not _CLUSTER.fullmatch(cluster):
                    raise FleetFileError(node_line(entry, "name"), f"{at}.name {cluster!r} is not a cluster name "
                                                               "(lower-case letters, digits and '-', up to 63)")
                if any(c.name == cluster for c in clusters):
                    raise FleetFileError(node_line(entry, "name"), f"{where}.clusters names {cluster} twice")
                env = self.string(entry, "env", at, 500).replace(" ", "") if "env" in entry else ""
                if env and not _ENVS.fullmatch(env):
                    raise FleetFileError(node_line(entry, "env"), f"{at}.env must be environment names separated "
                                                              "by commas")
                clusters.append(FluxCluster(cluster, env))
        receivers = self.receivers(flux, where, taken, name) if "receivers" in flux else ()
        return setting, tuple(clusters), receivers

    def receivers(self, flux: CommentedMap, where: str, taken: dict[str, tuple[str, str]],
                  name: str) -> tuple[FluxReceiverRef, ...]:
        """The tenant's Receivers, each checked by the FLUX_RECEIVERS rules; their token settings are the tenant's
        own (never another tenant's, never its PAT or events key) and their URLs its own."""
        value, line = flux["receivers"], node_line(flux, "receivers")
        if not isinstance(value, CommentedSeq):
            raise FleetFileError(line, f"{where}.receivers must be a list of {{cluster, env, url, secretSetting}}, "
                                       f"got {describe_value(value)}")
        if len(value) > MAX_FLUX_RECEIVERS:
            raise FleetFileError(line, f"{where}.receivers lists {len(value)}; the limit is {MAX_FLUX_RECEIVERS}")
        receivers: list[FluxReceiverRef] = []
        for index, item in enumerate(value):
            at = f"{where}.receivers[{index}]"
            item_line = node_line(value, index)
            entry = self.mapping(item, at, flux_receiver_rules.KEYS, item_line)
            missing = [k for k in flux_receiver_rules.KEYS if k not in entry]
            if missing:
                raise FleetFileError(item_line, f"{at} needs {', '.join(missing)}")
            ref, key, problem = flux_receiver_rules.check_entry(entry)
            if ref is None:
                raise FleetFileError(node_line(entry, key) if key in entry else item_line, f"{at}: {problem}")
            if any(r.cluster == ref.cluster for r in receivers):
                raise FleetFileError(node_line(entry, "cluster"), f"{where}.receivers names cluster {ref.cluster} twice")
            url_line = node_line(entry, "url")
            owner = self.receiver_urls.get(ref.url)
            if owner is not None:
                raise FleetFileError(url_line, f"{at}.url is already "
                                               + ("named by this tenant" if owner == name else f"tenant {owner}'s")
                                               + ": a Receiver is woken for one tenant only")
            self.setting_name(entry, "secretSetting", at, taken, name)
            self.receiver_urls[ref.url] = name
            receivers.append(ref)
        return tuple(receivers)

    def credentials(self, node: CommentedMap, where: str, pat_settings: dict[str, tuple[str, str]],
                    name: str) -> tuple[str, date | None]:
        where = f"{where}.credentials"
        line = node_line(node, "credentials")
        creds = self.mapping(node["credentials"], where, _CREDENTIAL_KEYS, line)
        if "identity" in creds:
            if "patSetting" in creds or "expires" in creds:
                raise FleetFileError(line, f"{where}: either patSetting (and expires) or identity, not both")
            if creds["identity"] != "managed":
                raise FleetFileError(node_line(creds, "identity"), f"{where}.identity must be 'managed' (the app's "
                                                               f"managed identity), got {describe_value(creds['identity'])}")
            return "", None
        if "patSetting" not in creds:
            raise FleetFileError(line, f"{where} needs patSetting (the name of the app setting holding the PAT) "
                                       "or identity: managed")
        setting = self.setting_name(creds, "patSetting", where, pat_settings, name)
        expires = None
        if "expires" in creds:
            value = creds["expires"]
            expires_line = node_line(creds, "expires")
            if isinstance(value, str):
                try:
                    value = date.fromisoformat(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
                except ValueError:
                    value = None
            if not isinstance(value, date) or isinstance(value, datetime):
                raise FleetFileError(expires_line, f"{where}.expires must be a date, YYYY-MM-DD")
            expires = value
        return setting, expires


def _repo_key(url: str) -> str:
    return normalize_repo_url(url)


def _url(value: str, where: str, line: int, schemes: tuple[str, ...] = ("https", "http", "ssh", "file")) -> str:
    """A repository (or organization) URL: one of `schemes`, no credentials, no query or fragment; plain http only
    to localhost (it would carry the tenant's credentials in clear)."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise FleetFileError(line, f"{where} is not a URL") from None
    if parts.scheme not in schemes:
        raise FleetFileError(line, f"{where} must be a {' / '.join(s + '://' for s in schemes)} URL"
                                   + (" (scp-like user@host:path is not accepted; write ssh://...)"
                                      if "ssh" in schemes else ""))
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise FleetFileError(line, f"{where} must be file:///absolute/path")
    elif not host:
        raise FleetFileError(line, f"{where} has no host")
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo and (parts.scheme != "ssh" or ":" in userinfo):   # ssh://git@host names a user, not a credential
        raise FleetFileError(line, f"{where} carries credentials in the URL; name them under credentials instead")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise FleetFileError(line, f"{where} must not carry a query or fragment")
    if parts.scheme == "http" and host not in _LOCAL_HOSTS:
        raise FleetFileError(line, f"{where} is plain http: the tenant's credentials would travel in clear; use "
                                   "https (http is accepted for localhost only)")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise FleetFileError(line, f"{where} contains white space or control characters")
    return value
