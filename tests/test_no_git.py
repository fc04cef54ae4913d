"""The function app on a host without a git executable (the stock Functions Python images have none).

The app runs in a subprocess whose PATH holds a python and no git, the way the Python worker loads it: import
`function_app`, index with `app.get_functions()`, then invoke functions. Every function must load, intake must
accept (202), health must answer 503 naming git and the fix, and a worker that needs git must fail with the one
permanent `GitMissing` error: poisoned at once with that reason, not retried.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ACR_SECRET, AZDO_SECRET, HLD_URL

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import asyncio, inspect, json, sys
from pathlib import Path

import pytest

import azure.functions as func

import function_app

class Out(func.Out):
    def __init__(self):
        self.value = None

    def set(self, value):
        self.value = value

    def get(self):
        return self.value


loop = asyncio.new_event_loop()
outputs = {}

def call(fn, arg):
    # invoke as the worker does: the trigger argument plus a func.Out for every output binding
    bindings = [json.loads(b) for b in fn.get_raw_bindings()]
    trigger = next(b["name"] for b in bindings if b["direction"].lower() == "in")
    outs = {b["name"]: Out() for b in bindings if b["direction"].lower() == "out" and b["name"] != "$return"}
    result = fn.get_user_function()(**{trigger: arg}, **outs)
    result = loop.run_until_complete(result) if inspect.iscoroutine(result) else result
    outputs[fn.get_function_name()] = {name: out.get() for name, out in outs.items()}
    return result

out = {"modules": sorted(m for m in sys.modules if m == "git" or m.startswith("git."))}
functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
out["functions"] = sorted(functions)

health = call(functions["health"], func.HttpRequest("GET", "/api/health", body=b""))
out["health"] = [health.status_code, json.loads(health.get_body())]

push = Path(sys.argv[1]).read_bytes()
acr = call(functions["acr_webhook"], func.HttpRequest(
    "POST", "/api/hooks/acr", body=push,
    headers={"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"}))
out["acr"] = [acr.status_code, json.loads(acr.get_body())]

from core.errors import is_permanent
from core.wiring import get_services

for text in outputs["acr_webhook"]["pushed"] or []:  # what the host writes for the queue output binding
    get_services().storage.enqueue("image-pushed", text)

out["workers"] = {}
for name, queue in (("bump_worker", "image-pushed"), ("generate_worker", "hld-changed")):
    if queue == "hld-changed":
        from core.adapters.storage import HLD_CHANGED
        from core.model.workitems import HldChanged, encode
        get_services().storage.enqueue(HLD_CHANGED, encode(HldChanged(
            event_id="push:1", trace_id="t-1", reason="push", commit="0" * 40)))
    message = get_services().storage.queue(queue).receive_message(visibility_timeout=60)
    try:
        call(functions[name], func.QueueMessage(id=message.id, body=message.content.encode()))
        out["workers"][name] = {"poisoned": [json.loads(m) for m in outputs[name]["poison"] or []]}
    except Exception as exc:
        out["workers"][name] = {"raised": [type(exc).__name__, is_permanent(exc), str(exc)]}
print(json.dumps(out))
"""


def run_without_git(tmp_path: Path, env: dict[str, str]) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    assert shutil.which("git", path=str(bin_dir)) is None
    base = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0",
            "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "ado"), "TMPDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "tests/fixtures/deliveries/acr_push.json"),
                          ACR_SECRET], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_app_loads_and_answers_without_git(azurite, tmp_path):
    out = run_without_git(tmp_path, {
        "AzureWebJobsStorage": azurite, "ACR_WEBHOOK_SECRET": ACR_SECRET, "AZDO_WEBHOOK_SECRET": AZDO_SECRET,
        "HLD_REPO_URL": HLD_URL, "MANIFEST_REPO_URL": "https://dev.azure.com/fabrikam/Fabrikam/_git/manifests",
        "WRITE_MODE": "direct", "WORK_DIR": str(tmp_path / "work")})

    assert out["modules"] == []  # GitPython is not imported by loading the app
    assert {"acr_webhook", "eventgrid_webhook", "azdo_webhook", "bump_worker", "generate_worker", "review_worker",
            "ops_replay", "ops_deployments", "health"} <= set(out["functions"])

    status, body = out["health"]
    assert status == 503 and body["tools"] == {"git": False}
    assert body["storage"] == {"reachable": True}
    [failure] = body["failing"]
    assert failure.startswith("git: git executable not found") and "container image" in failure

    status, body = out["acr"]
    assert status == 202 and body["eventId"].startswith("acr:")

    for name in ("bump_worker", "generate_worker"):
        # GitMissing is Permanent: the message goes to its poison queue on the first attempt, with the reason
        assert out["workers"][name].get("poisoned"), (name, out["workers"][name])
        [poisoned] = out["workers"][name]["poisoned"]
        reason = poisoned["poisonReason"]
        assert "GitMissing" in reason and "git executable not found on PATH" in reason, (name, reason)
        assert "container image" in reason


def test_import_alone_needs_no_storage_and_no_git(tmp_path):
    """What the worker's metadata request does: import and index, with no app settings at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    code = "import function_app; print(len(function_app.app.get_functions()))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
                              "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "ado")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.strip()) >= 9
    assert "Bad git executable" not in run.stderr


def test_rendered_mode_without_helm_is_one_permanent_error(tmp_path, monkeypatch):
    from core.errors import is_permanent
    from core.generate.helm import HelmMissing, HelmTemplate

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("HELM_BIN", raising=False)
    with pytest.raises(HelmMissing) as raised:
        HelmTemplate(None, tmp_path).render(release="web", chart="./chart", namespace="prod", values="",
                                            limit=1 << 20, label="component web (prod)")
    assert is_permanent(raised.value)
    assert "helm binary 'helm' not found" in str(raised.value) and "HELM_MODE=helmrelease" in str(raised.value)


def test_git_missing_is_permanent_and_names_the_fix(monkeypatch, tmp_path):
    from core.errors import is_permanent
    from core.adapters.git_workspace import GitMissing, GitWorkspace

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GitMissing) as raised:
        GitWorkspace("https://dev.azure.com/fabrikam/Fabrikam/_git/hld", "main", base_dir=tmp_path)
    assert is_permanent(raised.value) and "deploy the container image" in str(raised.value)
