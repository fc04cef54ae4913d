"""fleet.yaml parsing and validation: every refusal is `fleet.yaml:LINE: what is wrong`; hostile input never
escapes as anything but FleetFileError or a Fleet."""
from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core.errors import Permanent
from core.model.fleet import Fleet, FluxCluster, RepoRef
from core.rules.fleet_file import MAX_FLEET_BYTES, FleetFileError, parse_fleet

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fleet" / "fleet.yaml"
PAT = "k3n2qz7w5xj4mh6vtr2ypd7l3cfa5sob2g4ei6u7nw3qx5rz2ab4"   # the shape of an Azure DevOps PAT (52, base32)
MESSAGE = re.compile(r"fleet\.yaml(:\d+)?: [^\n]+")


def parse(text: str, **kwargs) -> Fleet:
    return parse_fleet(text.encode(), "test", **kwargs)


def refused(text: str, **kwargs) -> FleetFileError:
    with pytest.raises(FleetFileError) as caught:
        parse(text, **kwargs)
    assert MESSAGE.fullmatch(str(caught.value)), str(caught.value)
    return caught.value


def tenant(name: str = "a", extra: str = "", manifests: str = "https://dev.azure.com/o/p/_git/m-{name}") -> str:
    return (f"  - name: {name}\n"
            f"    manifests: {{url: \"{manifests.format(name=name)}\"}}\n" + extra)


def test_the_example_parses_with_every_key():
    fleet = parse_fleet(EXAMPLE.read_bytes(), "https://dev.azure.com/ops/fleet@abc")

    assert fleet.names == ("contoso", "fabrikam", "northwind")
    assert fleet.source == "https://dev.azure.com/ops/fleet@abc"
    contoso, fabrikam, northwind = fleet.tenants
    assert contoso.hld == RepoRef("https://dev.azure.com/contoso/gitops/_git/hld", "main")
    assert contoso.write_mode == "pull-request"
    assert (contoso.azdo_org_url, contoso.azdo_project) == ("https://dev.azure.com/contoso", "gitops")
    assert contoso.images == ("contosoacr.azurecr.io/shop/*", "contosoacr.azurecr.io/platform/*")
    assert (contoso.pat_setting, contoso.pat_expires) == ("CONTOSO_AZDO_PAT", date(2027, 3, 31))
    assert contoso.flux_secret_setting == "CONTOSO_FLUX_KEY"
    assert contoso.flux_clusters == (FluxCluster("contoso-prod-eastus", "prod"), FluxCluster("contoso-dev"))
    assert fabrikam.flux_secret_setting == "" and fabrikam.flux_clusters == ()
    assert fabrikam.hld is None and fabrikam.bump_repo == RepoRef(
        "https://dev.azure.com/fabrikam/platform/_git/cluster-manifests", "deploy")
    assert fabrikam.pat_setting == "" and fabrikam.write_mode == "direct"
    assert northwind.paused and northwind.images == ("*",) and northwind.pat_expires is None
    assert fleet.for_image("contosoacr.azurecr.io/shop/cart") == [contoso, fabrikam]  # northwind is paused


def test_defaults_for_a_minimal_tenant():
    (only,) = parse("tenants:\n" + tenant("solo")).tenants
    assert (only.name, only.hld, only.manifests.branch, only.write_mode) == ("solo", None, "main", "direct")
    assert (only.images, only.pat_setting, only.paused, only.azdo_org_url) == (("*",), "", False, "")


REFUSALS = [
    # (fleet.yaml, line, part of the message)
    ("tenants: []\n", 1, "tenants is empty"),
    ("", None, "is empty"),
    ("tenants:\n" + tenant() + "colour: blue\n", 4, "unknown key 'colour' in the top level"),
    ("tenants:\n" + tenant(extra="    owner: me\n"), 4, "unknown key 'owner' in tenants[0]"),
    ("tenants: {a: 1}\n", 1, "tenants must be a list"),
    ("tenants:\n  - manifests: {url: 'https://h/x'}\n", 2, "needs a 'name'"),
    ("tenants:\n" + tenant("Bad_Name"), 2, "is not a slug"),
    ("tenants:\n" + tenant("a") + tenant("a", manifests="https://h/other"), 4,
     "already the name of the tenant on line 2"),
    ("tenants:\n  - name: a\n", 2, "needs 'manifests'"),
    ("tenants:\n  - name: a\n    manifests: {branch: main}\n", 3, "needs a 'url'"),
    ("tenants:\n  - name: a\n    manifests: {url: 'https://h/x', tag: v1}\n", 3, "unknown key 'tag'"),
    ("tenants:\n  - name: a\n    manifests:\n      url: https://h/x\n      branch: 'refs/heads/main'\n", 5,
     "not a plain branch name"),
    ("tenants:\n" + tenant("a") + tenant("b", manifests="https://dev.azure.com/O/P/_git/M-A.git/"), 5,
     "already tenant a's repository"),
    ("tenants:\n" + tenant("a", extra="    hld: {url: 'https://dev.azure.com/o/p/_git/m-a'}\n"), 4,
     "same repository and branch"),
    ("tenants:\n" + tenant("a", manifests="https://user:pw@h/x"), 3, "carries credentials"),
    ("tenants:\n" + tenant("a", manifests="https://someone@h/x"), 3, "carries credentials"),
    ("tenants:\n" + tenant("a", manifests="ssh://git:pw@h/x"), 3, "carries credentials"),
    ("tenants:\n" + tenant("a", manifests="git@h:org/x.git"), 3, "must be a https://"),
    ("tenants:\n" + tenant("a", manifests="ftp://h/x"), 3, "must be a https://"),
    ("tenants:\n" + tenant("a", manifests="javascript:alert(1)"), 3, "must be a https://"),
    ("tenants:\n" + tenant("a", manifests="http://git.example.com/x"), 3, "plain http"),
    ("tenants:\n" + tenant("a", manifests="https://h/x?private=1"), 3, "query or fragment"),
    ("tenants:\n" + tenant("a", manifests="https:///x"), 3, "has no host"),
    ("tenants:\n" + tenant("a", manifests="https://[::1/x"), 3, "is not a URL"),
    ("tenants:\n" + tenant(extra="    writeMode: yolo\n"), 4, "'yolo' is not one of direct, pull-request"),
    ("tenants:\n" + tenant(extra="    writeMode: pull-request\n"), 4, "pull-request needs azureDevOps"),
    ("tenants:\n" + tenant(extra="    azureDevOps: {org: https://dev.azure.com/o}\n"), 4, "needs both 'org' and"),
    ("tenants:\n" + tenant(extra="    azureDevOps: {org: 'http://dev.azure.com/o', project: p}\n"), 4,
     "must be a https:// URL"),
    ("tenants:\n" + tenant(extra="    azureDevOps: {org: 'https://dev.azure.com/o', project: 'a/b'}\n"), 4,
     "not an Azure DevOps project name"),
    ("tenants:\n" + tenant(extra="    images: []\n"), 4, "images is empty"),
    ("tenants:\n" + tenant(extra="    images: acr.io/*\n"), 4, "must be a list of globs"),
    ("tenants:\n" + tenant(extra="    images:\n      - acr.io/x\n      - Acr.io/Y\n"), 6, "images[1] must be a glob"),
    ("tenants:\n" + tenant(extra="    images: [acr.io/x, acr.io/x]\n"), 4, "lists 'acr.io/x' twice"),
    ("tenants:\n" + tenant(extra="    paused: yes please\n"), 4, "paused must be true or false"),
    ("tenants:\n" + tenant(extra="    credentials: {}\n"), 4, "needs patSetting"),
    ("tenants:\n" + tenant(extra="    credentials: {identity: system}\n"), 4, "identity must be 'managed'"),
    ("tenants:\n" + tenant(extra="    credentials: {identity: managed, patSetting: X_PAT}\n"), 4, "not both"),
    ("tenants:\n" + tenant(extra="    credentials: {patSetting: 'not a name'}\n"), 4, "not an app setting name"),
    ("tenants:\n" + tenant(extra="    credentials: {patSetting: AzureWebJobsStorage}\n"), 4,
     "one of the service's own settings"),
    ("tenants:\n" + tenant(extra="    credentials: {patSetting: AZDO_WEBHOOK_SECRET}\n"), 4,
     "one of the service's own settings"),
    ("tenants:\n" + tenant("a", extra="    credentials: {patSetting: SHARED}\n")
     + tenant("b", extra="    credentials:\n      patSetting: SHARED\n"), 8, "already tenant a's: one tenant's"),
    ("tenants:\n" + tenant(extra="    flux: {}\n"), 4, "flux needs secretSetting"),
    ("tenants:\n" + tenant(extra="    flux: {secretSetting: A_KEY, cluster: x}\n"), 4, "unknown key 'cluster' in"),
    ("tenants:\n" + tenant(extra="    flux: {secretSetting: FLUX_WEBHOOK_SECRET}\n"), 4,
     "one of the service's own settings"),
    ("tenants:\n" + tenant("a", extra="    flux: {secretSetting: SHARED_KEY}\n")
     + tenant("b", extra="    flux: {secretSetting: SHARED_KEY}\n"), 7, "already tenant a's: one tenant's"),
    ("tenants:\n" + tenant("a", extra="    credentials: {patSetting: A_PAT}\n")
     + tenant("b", extra="    flux: {secretSetting: A_PAT}\n"), 7, "already tenant a's: one tenant's"),
    ("tenants:\n" + tenant(extra="    credentials: {patSetting: A_PAT}\n    flux: {secretSetting: A_PAT}\n"), 5,
     "already its patSetting: one setting holds one secret"),
    ("tenants:\n" + tenant(extra="    flux: {secretSetting: A_KEY, clusters: prod}\n"), 4, "must be a list of"),
    ("tenants:\n" + tenant(extra="    flux:\n      secretSetting: A_KEY\n      clusters: [{name: Prod_1}]\n"), 6,
     "is not a cluster name"),
    ("tenants:\n" + tenant(extra="    flux:\n      secretSetting: A_KEY\n      clusters: [{env: prod}]\n"), 6,
     "needs a 'name'"),
    ("tenants:\n" + tenant(extra="    flux:\n      secretSetting: A_KEY\n      clusters: [{name: p}, {name: p}]\n"),
     6, "names p twice"),
    ("tenants:\n" + tenant(extra="    flux:\n      secretSetting: A_KEY\n      clusters: [{name: p, env: 'a b;c'}]\n"),
     6, "env must be environment names"),
    ("tenants:\n" + tenant(extra="    credentials: {patSetting: A_PAT, expires: 31.03.2027}\n"), 4,
     "expires must be a date"),
    ("tenants:\n" + tenant(extra="    credentials: {patSetting: A_PAT, expires: '2027-02-30'}\n"), 4,
     "expires must be a date"),
    ("tenants:\n" + tenant(extra="    credentials: {patSetting: A_PAT, expires: 2027-13-01}\n"), 4,
     "expires must be a date"),
    ("tenants:\n" + tenant(extra="    credentials:\n      pat: hunter2\n"), 5, "key 'pat' would hold a secret"),
    ("tenants:\n" + tenant(extra="    credentials:\n      token: hunter2\n"), 5, "key 'token' would hold"),
    ("tenants:\n" + tenant(extra=f"    credentials:\n      patSetting: {PAT}\n"), 5, "an Azure DevOps PAT"),
    ("tenants:\n" + tenant(extra=f"    writeMode: {PAT}\n"), 4, "an Azure DevOps PAT"),
    (f"# old pat: {PAT}\ntenants:\n" + tenant(), 1, "an Azure DevOps PAT"),
    ("tenants:\n" + tenant(extra="    images: [\"ghp_" + "a1B2" * 10 + "\"]\n"), 4, "a GitHub token"),
    ("tenants:\n" + tenant(extra="    paused: \"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x\"\n"), 4,
     "a JSON web token"),
    ("tenants:\n" + tenant(extra="    x: DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc\n"), 4,
     "a connection string"),
    ("tenants:\n" + tenant(extra="    x: " + "Zm9vYmFyYmF6cXV4" * 4 + "==\n"), 4, "a base64 key"),
    ("tenants:\n" + tenant(extra="    x: Q7fZ9kLm2XpW8rTb4NvY6cHd1JsGq3Ae\n"), 4, "a random token"),
    # a PAT spelled with YAML escapes does not show on its line; the value check still finds it
    ("tenants:\n" + tenant(extra="    x: \"" + "".join(f"\\x{ord(c):02x}" for c in PAT) + "\"\n"), 4,
     "an Azure DevOps PAT"),
    ("tenants:\n- &t {name: a}\n- *t\n", 2, "needs 'manifests'"),
    ("a: &a [*a]\n", 1, "contains itself"),
    ("tenants:\n  - name: a\n    manifests: [\n", 4, "invalid YAML"),
]


@pytest.mark.parametrize("text,line,message", REFUSALS)
def test_each_refusal_names_its_line(text, line, message):
    error = refused(text)
    assert error.line == line, str(error)
    assert message in str(error)
    assert isinstance(error, Permanent)


@pytest.mark.parametrize("text", [t for t, _, m in REFUSALS if "secret" in m or "PAT" in m or "token" in m])
def test_a_secret_is_never_repeated_in_the_message(text):
    error = str(refused(text))
    for secret in (PAT, "hunter2", "ghp_", "eyJhbG", "AccountKey=abc", "Q7fZ9kLm"):
        assert secret not in error


def test_a_tenant_cannot_name_the_fleet_repository():
    fleet_repo = "https://dev.azure.com/ops/platform/_git/fleet"
    error = refused("tenants:\n" + tenant("a", extra=f"    hld: {{url: '{fleet_repo}.git'}}\n"),
                    fleet_repo_url=fleet_repo)
    assert error.line == 4 and "the fleet repository itself" in str(error)


def test_plain_http_and_file_urls_for_local_stand_ins():
    fleet = parse("tenants:\n" + tenant("a", manifests="http://127.0.0.1:8080/m")
                  + tenant("b", manifests="file:///srv/git/m.git")
                  + tenant("c", manifests="ssh://git@ssh.dev.azure.com/v3/o/p/m"))
    assert [t.manifests.url for t in fleet.tenants] == [
        "http://127.0.0.1:8080/m", "file:///srv/git/m.git", "ssh://git@ssh.dev.azure.com/v3/o/p/m"]


def test_size_and_encoding_limits():
    assert "byte limit" in str(refused("#" * (MAX_FLEET_BYTES + 1)))
    with pytest.raises(FleetFileError) as caught:
        parse_fleet(b"tenants:\n  - name: \xff\n", "test")
    assert str(caught.value) == "fleet.yaml:2: is not UTF-8 text"


def test_too_many_tenants():
    text = "tenants:\n" + "".join(tenant(f"t{i}") for i in range(501))
    assert "the limit is 500" in str(refused(text))


# ---------------------------------------------------------------------------------------------- properties


def outcome(data: bytes) -> Fleet | FleetFileError:
    try:
        return parse_fleet(data, "hypothesis")
    except FleetFileError as exc:
        assert MESSAGE.fullmatch(str(exc)), str(exc)
        return exc


@given(st.binary(max_size=2000))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_give_a_fleet_or_a_line_error(data):
    outcome(data)


KEYS = ["tenants", "name", "hld", "manifests", "url", "branch", "writeMode", "azureDevOps", "org", "project",
        "images", "credentials", "patSetting", "expires", "identity", "paused", "<<", "pat"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.sampled_from(["a", "b", "managed", "direct", "pull-request", "main", "https://h/x", "https://h/y",
                     "file:///tmp/x", "ssh://git@h/x", "http://h/x", "https://u:p@h/x", "2027-01-01", "X_PAT",
                     "acr.io/*", PAT, "AzureWebJobsStorage", "https://dev.azure.com/o"]))
TREES = st.recursive(SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), children, max_size=6)), max_leaves=40)


@given(TREES)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_shaped_document_gives_a_fleet_or_a_line_error(tree):
    outcome(json.dumps(tree).encode())   # JSON is YAML: every shape, every key, every scalar type


@given(st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_example_gives_a_fleet_or_a_line_error(data):
    text = bytearray(EXAMPLE.read_bytes())
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = data.draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
            [b"&a ", b"*a", b"\n  - ", b": ", b"{", b"[", b"!!python/object:os.system ", b"\t", b"<<: *a\n"]))
        if action == "insert":
            text[at:at] = chunk
        elif action == "delete":
            del text[at:at + len(chunk)]
        else:
            text[at:at + len(chunk)] = chunk
    result = outcome(bytes(text))
    if isinstance(result, Fleet):
        assert result.tenants and len(set(result.names)) == len(result.names)


def test_the_readme_example_parses():
    readme = (EXAMPLE.parents[2] / "README.md").read_text()
    section = readme.split("## `fleet.yaml`: one deployment, many tenants", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    fleet = parse(block)
    assert fleet.names == ("contoso", "fabrikam")
    assert fleet.tenants[0].pat_expires == date(2027, 3, 31) and fleet.tenants[1].pat_setting == ""


@given(st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_a_pat_anywhere_is_refused_and_never_repeated(data):
    lines = EXAMPLE.read_text().splitlines()
    at = data.draw(st.integers(0, len(lines) - 1))
    column = data.draw(st.integers(0, len(lines[at])))
    lines[at] = lines[at][:column] + data.draw(st.sampled_from(["", " ", "'", '"', "# "])) + PAT + lines[at][column:]
    with pytest.raises(FleetFileError) as caught:
        parse_fleet("\n".join(lines).encode(), "hypothesis")
    assert PAT not in str(caught.value) and PAT[:20] not in str(caught.value)


def test_the_example_lists_a_tenants_own_receivers():
    fleet = parse_fleet(EXAMPLE.read_bytes(), "example")
    contoso = fleet.tenant("contoso")

    assert [(r.cluster, r.env, r.secret_setting) for r in contoso.flux_receivers] == [
        ("contoso-prod-eastus", "prod", "CONTOSO_RECEIVER_PROD_EASTUS")]
    assert contoso.flux_receivers[0].url.startswith("https://") and "/hook/" in contoso.flux_receivers[0].url
    assert all(not t.flux_receivers for t in fleet.tenants if t.name != "contoso")
