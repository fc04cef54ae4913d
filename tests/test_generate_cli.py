"""`python -m core.generate`: exit codes, messages, autopilot.yaml defaults."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.generate.__main__ import main
from tests.test_generate_helpers import bedrock_hld, component, documents, write

REPOSITORY = Path(__file__).resolve().parent.parent


def test_module_generates_and_writes(tmp_path):
    hld = bedrock_hld(tmp_path / "hld")
    out = tmp_path / "manifests"
    result = subprocess.run(
        [sys.executable, "-m", "core.generate", "--hld", str(hld), "--env", "prod", "--env", "dev", "--out", str(out),
         "--helm-mode", "helmrelease", "--allowed-source-hosts", "dev.azure.com"], cwd=REPOSITORY,
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "12 paths changed\n"
    chart = documents((out / "dev/fabrikam-project/fabrikam/dev/chart.yaml").read_bytes())
    assert chart[1]["spec"]["values"]["image"]["tag"] == "dev-20200405.3"
    assert main(["--hld", str(hld), "--env", "prod", "--env", "dev", "--out", str(out),
                 "--helm-mode", "helmrelease", "--allowed-source-hosts", "dev.azure.com"]) == 0


def test_check_validates_without_writing(tmp_path, capsys):
    hld = bedrock_hld(tmp_path / "hld")
    assert main(["--hld", str(hld), "--check", "--helm-mode", "helmrelease", "--out", str(tmp_path / "out"),
                 "--hld-repo-url", "https://dev.azure.com/fabrikam/project/_git/hld"]) == 0
    assert capsys.readouterr().out == "ok: 6 files for prod\n"
    assert not (tmp_path / "out").exists()


def test_failure_exits_1_with_one_line_reason(tmp_path, capsys):
    hld = write(tmp_path / "hld", {"component.yaml": component("root", {"name": "x", "path": "../../etc"})})
    out = tmp_path / "out"
    assert main(["--hld", str(hld), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: component x (prod): path '../../etc' leaves the checkout\n"
    assert captured.out == "" and not out.exists()


def test_check_reports_a_broken_hld(tmp_path, capsys):
    hld = write(tmp_path / "hld", {"component.yaml": "name: [broken\n"})
    assert main(["--hld", str(hld), "--check"]) == 1
    assert capsys.readouterr().err.startswith("error: component.yaml:2: invalid YAML: ")


def test_out_is_required_without_check(tmp_path, capsys):
    result = subprocess.run([sys.executable, "-m", "core.generate", "--hld", str(tmp_path)], cwd=REPOSITORY,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--out is required" in result.stderr


def test_environments_and_helm_mode_default_from_autopilot_yaml(tmp_path, capsys, monkeypatch):
    hld = bedrock_hld(tmp_path / "hld")
    write(hld, {"autopilot.yaml": "environments: [staging, prod]\nhelmMode: helmrelease\nautoMerge: {other: keys}\n"})
    out = tmp_path / "out"
    monkeypatch.setenv("ALLOWED_SOURCE_HOSTS", "dev.azure.com")
    assert main(["--hld", str(hld), "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["prod", "staging"]
    assert documents((out / "staging/fabrikam-project/fabrikam/dev/chart.yaml").read_bytes())[1]["kind"] == \
        "HelmRelease"
    assert main(["--hld", str(hld), "--out", str(out), "--env", "qa"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["prod", "qa", "staging"]


def test_invalid_autopilot_settings_are_reported(tmp_path, capsys):
    hld = write(tmp_path / "hld", {"component.yaml": component("root"), "autopilot.yaml": "helmMode: kustomize\n"})
    assert main(["--hld", str(hld), "--check"]) == 1
    assert "autopilot.yaml: `helmMode` must be one of rendered, helmrelease" in capsys.readouterr().err
    write(hld, {"autopilot.yaml": "environments: {prod: true}\n"})
    assert main(["--hld", str(hld), "--check"]) == 1
    assert "`environments` must be a non-empty list" in capsys.readouterr().err


def test_defaults_without_autopilot_yaml_are_prod_and_rendered(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.delenv("HELM_BIN", raising=False)
    hld = bedrock_hld(tmp_path / "hld", chart={"method": "local", "path": "chart"})
    write(hld, {"fabrikam-project/fabrikam/dev/chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 1.0.0\n"})
    assert main(["--hld", str(hld), "--check"]) == 1
    assert "component fabrikam-project/fabrikam/dev/chart (prod): helm binary 'helm' not found" in \
        capsys.readouterr().err
