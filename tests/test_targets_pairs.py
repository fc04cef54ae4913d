"""Target discovery over (path, bytes) pairs: the same targets as over the same files written to a checkout."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.rules.targets import MAX_FILE_BYTES, ImageFields, discover_targets

from core.adapters.checkout_targets import find_all_targets

NAMES = ("svc", "api", "dev", "prod", "chart", "web")
ENVS = ("common", "dev", "prod", "DEV", "staging")
IMAGES = ("r.io/a", "r.io/b", "host:5000/team/c")
FIELDS = (ImageFields(("app", "image"), "name", "version"),)


def _image(draw) -> str:
    repository, tag = draw(st.sampled_from(IMAGES)), draw(st.sampled_from(("1", "1.2.3", "2")))
    shape = draw(st.sampled_from(("map", "string", "tag-only", "registry", "fields", "siblings")))
    if shape == "map":
        return f"image:\n  repository: {repository}\n  tag: '{tag}'\n"
    if shape == "string":
        return f"image: {repository}:{tag}\n"
    if shape == "tag-only":
        return f"image:\n  tag: '{tag}'\n"
    if shape == "registry":
        host, _, rest = repository.partition("/")
        return f"image:\n  registry: {host}\n  repository: {rest}\n  tag: '{tag}'\n"
    if shape == "siblings":
        return f"image: {repository}\nimageTag: '{tag}'\n"
    return f"app:\n  image:\n    name: {repository}\n    version: '{tag}'\n"


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.splitlines())


@st.composite
def config_file(draw) -> str:
    values = _image(draw)
    if draw(st.booleans()):
        return "config:\n" + _indent(values, 2)
    name = draw(st.sampled_from(NAMES[:3]))
    return f"subcomponents:\n  {name}:\n    config:\n" + _indent(values, 6)


@st.composite
def component_file(draw) -> str:
    entries = []
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True)):
        kind = draw(st.sampled_from(("component", "helm")))
        path = draw(st.sampled_from(("", "./" + name, "./" + draw(st.sampled_from(NAMES)))))
        entries.append(f"- {{name: {name}, type: {kind}, method: local, path: '{path}'}}\n")
    return "name: top\nsubcomponents:\n" + "".join(entries) if entries else "name: top\n"


@st.composite
def manifest_file(draw) -> str:
    image = f"{draw(st.sampled_from(IMAGES))}:{draw(st.sampled_from(('1', '2')))}"
    ignore = "  # autopilot: ignore" if draw(st.integers(0, 5)) == 0 else ""
    return (f"kind: Deployment\nmetadata: {{name: {draw(st.sampled_from(NAMES))}}}\nspec:\n  template:\n"
            f"    spec:\n      containers:\n      - image: {image}{ignore}\n")


@st.composite
def kustomization(draw) -> str:
    return f"images:\n- name: {draw(st.sampled_from(IMAGES))}\n  newTag: '{draw(st.sampled_from(('1', '2')))}'\n"


@st.composite
def tree(draw) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for _ in range(draw(st.integers(1, 8))):
        directory = "/".join(draw(st.lists(st.sampled_from(NAMES[:3]), max_size=2)))
        prefix = directory + "/" if directory else ""
        kind = draw(st.sampled_from(("config", "nested", "json", "component", "manifest", "kustomize", "junk")))
        if kind == "nested":  # a parent's block for a child component that has a config of its own
            name = draw(st.sampled_from(NAMES[:3]))
            files[f"{prefix}config/{draw(st.sampled_from(ENVS))}.yaml"] = (
                f"subcomponents:\n  {name}:\n    config:\n" + _indent(_image(draw), 6)).encode()
            path, text = f"{prefix}{name}/config/{draw(st.sampled_from(ENVS))}.yaml", "config:\n" + _indent(
                _image(draw), 2)
        elif kind == "config":
            path, text = f"{prefix}config/{draw(st.sampled_from(ENVS))}.yaml", draw(config_file())
        elif kind == "json":
            path = f"{prefix}config/{draw(st.sampled_from(ENVS))}.json"
            text = '{"subcomponents": {"chart": {"config": {"image": {"tag": "9"}}}}}'
        elif kind == "component":
            path, text = prefix + "component.yaml", draw(component_file())
        elif kind == "manifest":
            path, text = f"{prefix}{draw(st.sampled_from(NAMES))}.yaml", draw(manifest_file())
        elif kind == "kustomize":
            path, text = prefix + "kustomization.yaml", draw(kustomization())
        else:
            path, text = f"{prefix}{draw(st.sampled_from(NAMES))}.yaml", draw(st.sampled_from(
                ("a: [\n", "a: 1\na: 2\n", "README", "- &x [*x]\n")))
        files[path] = text.encode()
    if draw(st.booleans()):
        files[draw(st.sampled_from(NAMES)) + "/notes.txt"] = b"not discovered"
    if draw(st.integers(0, 4)) == 0:
        files["prod/latin1.yaml"] = "kind: Pod\nspec: {containers: [{image: r.io/a:1}]}\n# caf\xe9\n".encode("latin-1")
    return files


def written(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=tree(), environments=st.sampled_from((None, ["prod"], ["DEV", "prod"], ["staging dev"])),
       fields=st.sampled_from(((), FIELDS)), narrow=st.booleans(), data=st.data())
def test_discovery_over_pairs_equals_discovery_over_the_written_directory(files, environments, fields, narrow, data):
    candidates = (data.draw(st.lists(st.sampled_from(sorted(files)), unique=True)) if narrow else None)
    with tempfile.TemporaryDirectory(prefix="pairs-") as scratch:
        root = written(Path(scratch), files)
        on_disk = find_all_targets(root, candidates=candidates, environments=environments, fields=fields)
    from_pairs = discover_targets(files.items(), candidates=candidates, environments=environments, fields=fields)
    assert from_pairs == on_disk


def test_pairs_form_the_tree_fabrikate_resolution_walks():
    """A tag-only environment file wins over the common map for its environment, through the pairs alone."""
    common = b"subcomponents:\n  chart:\n    config:\n      image:\n        repository: r.io/a\n        tag: '1'\n"
    dev = b"subcomponents:\n  chart:\n    config:\n      image: {tag: '2'}\n"
    files = [("svc/ring/config/common.yaml", common), ("svc/ring/config/dev.yaml", dev)]
    by_file = {t.file: t for t in discover_targets(files, environments=["dev", "prod"])}
    assert (by_file["svc/ring/config/dev.yaml"].tag, by_file["svc/ring/config/dev.yaml"].environments) == (
        "2", ("dev",))
    assert by_file["svc/ring/config/dev.yaml"].repository_from == "svc/ring/config/common.yaml:5"
    assert by_file["svc/ring/config/common.yaml"].environments == ("prod",)
    assert (by_file["svc/ring/config/dev.yaml"].service, by_file["svc/ring/config/dev.yaml"].env) == ("svc", "ring")


def test_hostile_pairs_are_never_targets():
    manifest = b"kind: Pod\nspec: {containers: [{image: r.io/a:1}]}\n"
    oversized = manifest + b"#" * MAX_FILE_BYTES
    bomb = b"kind: Pod\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n" % ((ord("b") + i,) * 2 + (ord("a") + i,) * 10)
        for i in range(8)) + b"spec: {containers: [{image: r.io/a:3}]}\n"
    files = [("../escape.yaml", manifest), ("/abs.yaml", manifest), ("a//b.yaml", manifest),
             ("./dot.yaml", manifest), ("big.yaml", oversized), ("latin.yaml", b"kind: Pod\n# caf\xe9\n" + manifest),
             ("bomb.yaml", bomb), ("ok/web.yaml", manifest)]
    found = discover_targets(files)
    # the alias bomb is indexed without expanding its aliases, so its one real image is found, quickly
    assert sorted((t.file, t.tag) for t in found) == [("bomb.yaml", "3"), ("ok/web.yaml", "1")]
