"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against the function app under
devhost on Azurite after a real chain run (a push through HLD to the manifests, a skipped push, a failed push).

Never skipped: without Chromium these tests fail and say how to install it (`.ci/run` does, as root).
Playwright is used with the system browser only (`executable_path`); `playwright install` is never needed.
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.adapters.storage import IMAGE_PUSHED, Storage, poison_queue
from core.adapters.trace import TraceLog
from devkit.gitrepos import bare_repo, commits, file_at, push_files
from tests.apphost import hosted_app

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEY = "browser-function-key"
MASTER = "browser-master-key"
ACR_SECRET = "browser-acr-secret"
XSS_SERVICE = "<script>window.__xss=1</script>"
XSS_TAG = '"onerror=window.__xss=2 x="'
XSS_REASON = '<img src=x onerror="window.__xss=3">'
AZDO_HLD = "https://dev.azure.com/fabrikam/Fabrikam/_git/hld"
WAIT_S = 45.0

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def host(azurite, tmp_path, monkeypatch):
    hld = bare_repo(tmp_path, EXAMPLES / "hld", name="hld")
    manifests = bare_repo(tmp_path, EXAMPLES / "manifests", name="manifests")
    settings = {"AzureWebJobsStorage": azurite, "ACR_WEBHOOK_SECRET": ACR_SECRET, "AZDO_WEBHOOK_SECRET": "x",
                "HLD_REPO_URL": hld, "MANIFEST_REPO_URL": manifests, "WRITE_MODE": "direct",
                "HELM_MODE": "helmrelease", "WORK_DIR": str(tmp_path / "work"), "FUNCTIONS_KEY": KEY,
                "FUNCTIONS_MASTER_KEY": MASTER}
    with hosted_app(monkeypatch, settings) as running:
        yield running, hld, manifests, Storage(azurite)


@pytest.fixture
def browser(tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; .ci/run does "
                    "it as root) or point CHROMIUM at a Chromium binary", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id="America/New_York")
        try:
            yield context
        finally:
            context.close()


def http(url: str, method: str = "GET", body: dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(errors="replace")


def wait_for(predicate, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def push(url: str, event: str, tag: str, repository: str = "fabrikam/frontend") -> None:
    body = {"id": event, "timestamp": datetime.now(timezone.utc).isoformat(), "action": "push",
            "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "digest": "sha256:" + event.encode().hex().ljust(64, "0")[:64], "repository": repository,
                       "tag": tag},
            "request": {"host": "fabrikam.azurecr.io"}}
    status, _, text = http(f"{url}/api/hooks/acr?code={KEY}", "POST", body, {"Authorization": f"Bearer {ACR_SECRET}"})
    assert status == 202, text


def trace_rows(storage: Storage, tag: str) -> list[dict]:
    return TraceLog(storage).query(tag=tag, top=50)


def run_chain(running, hld: str, manifests: str, storage: Storage) -> str:
    """A deployed push, a skipped push and a failed push (autopilot.yaml broken in the HLD); returns the HLD's good
    autopilot.yaml so the test can repair it."""
    push(running.url, "chain-ok", "1.4.2")
    wait_for(lambda: any("1.4.2" in c.subject for c in commits(manifests, "main")), "the manifest commit")
    wait_for(lambda: len(rows := trace_rows(storage, "1.4.2")) == 2
             and all(any(s.name == "manifest-commit" for s in r.stages) for r in rows), "the traced chain")

    push(running.url, "chain-old", "1.0.0")
    wait_for(lambda: any(s.name == "skipped" for r in trace_rows(storage, "1.0.0") for s in r.stages),
             "the skipped push")

    good_policy = file_at(hld, "main", "autopilot.yaml").decode()
    push_files(hld, "main", {"autopilot.yaml": "rules: [\n"}, "Break autopilot.yaml")
    push(running.url, "chain-broken", "1.5.0")
    wait_for(lambda: storage.queue_depth(poison_queue(IMAGE_PUSHED)) == 1, "the failed push on the poison queue")
    wait_for(lambda: any(s.name == "failed" for r in trace_rows(storage, "1.5.0") for s in r.stages),
             "the failed stage")
    return good_policy


def until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll `expression` in the page (Playwright's wait_for_function evaluates strings with eval, which the page's
    CSP forbids, as it should)."""
    wait_for(lambda: page.evaluate(expression), f"the page to satisfy {expression}", timeout)


# WCAG 2 contrast of every piece of text against the background it is drawn on (the first opaque one up the tree).
CONTRAST_JS = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || c[3] === 1) return c.slice(0, 3); } return [255, 255, 255]; };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el.offsetParent) continue;
    if (el.closest("button:disabled, option, .visually-hidden")) continue;
    const a = lum(rgb(getComputedStyle(el).color).slice(0, 3)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(node.textContent.trim().slice(0, 40) + " " + ratio.toFixed(2));
  }
  return low;
}"""


def rows(page) -> list[dict]:
    return page.eval_on_selector_all("#deployments li.dep", "els => els.map(e => ({state: e.dataset.state, "
                                     "text: e.innerText}))")


def test_dashboard_in_chromium_after_a_real_chain(host, browser, tmp_path):
    running, hld, manifests, storage = host
    good_policy = run_chain(running, hld, manifests, storage)
    base = f"{running.url}/api/ops/dashboard"

    # Nothing is served without the master key; the page carries no key and no data, only its nonce'd script.
    assert http(base)[0] == 401
    assert http(f"{base}?code={KEY}")[0] == 401
    assert http(f"{base}/data?code={KEY}")[0] == 401
    status, headers, html = http(f"{base}?code={MASTER}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    nonce = re.search(r"script-src 'nonce-([^']+)'", headers["Content-Security-Policy"]).group(1)
    assert f'<script nonce="{nonce}">' in html and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    status, _, data = http(f"{base}/data", headers={"x-functions-key": MASTER})
    assert status == 200
    for secret in (MASTER, KEY, ACR_SECRET):
        assert secret not in html and secret not in data

    # Actions are refused from another site's page, even with the key.
    for foreign in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        status, _, text = http(f"{running.url}/api/ops/replay?code={MASTER}", "POST", {"queue": IMAGE_PUSHED},
                               foreign)
        assert status == 403 and "cross-origin" in text
    assert storage.queue_depth(poison_queue(IMAGE_PUSHED)) == 1

    page = browser.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept() if dialog.type == "confirm" else dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(f"{base}?code={MASTER}")
    until(page, "document.querySelectorAll('#deployments li.dep').length >= 5")
    page.screenshot(path=str(tmp_path / "dashboard-1280x800.png"))
    page.screenshot(path=str(tmp_path / "dashboard-1280-full.png"), full_page=True)

    # Hostile values arrive with the next auto-refresh.
    TraceLog(storage).record("0" * 31 + "x", "hostile-target", "skipped", actor="test",
                             fields={"service": XSS_SERVICE, "env": "dev", "image": "fabrikam.azurecr.io/hostile",
                                     "imageTag": XSS_TAG},
                             detail={"reason": XSS_REASON})
    TraceLog(storage).record("2" * 32, "linked-target", "hld-pr", actor="test",
                             fields={"service": "backend", "env": "prod", "imageTag": "2.0.5", "pr": "42",
                                     "image": "fabrikam.azurecr.io/fabrikam/backend", "hldRepo": AZDO_HLD},
                             detail={"commit": "a" * 40, "pr": 42})
    until(page, "document.querySelectorAll('#deployments li.dep').length >= 7", timeout=20)
    link = page.locator(f"#deployments a[href='{AZDO_HLD}/pullrequest/42']")
    assert link.count() == 1 and link.get_attribute("rel") == "noreferrer noopener"
    assert link.text_content() == "HLD pull request #42"
    awaiting = page.text_content("#deployments li.dep[data-state='awaiting-approval']")
    assert "HLD pull request awaiting approval" in awaiting
    shown = [r for r in rows(page) if r["state"] != "awaiting-approval"]
    states = [r["state"] for r in shown]
    assert states.count("deployed") == 2 and states.count("failed") == 1 and states.count("skipped") == 3, shown
    deployed = [r["text"] for r in shown if r["state"] == "deployed"]
    for text in deployed:
        assert "frontend:1.4.2" in text and "in manifests" in text
        assert re.search(r"received\s*\+[\d.]+ s", text) and "HLD commit" in text and "manifest commit" in text
    assert any("skipped: older than the current tag" in r["text"] for r in shown)
    failed = next(r["text"] for r in shown if r["state"] == "failed")
    assert "frontend:1.5.0" in failed and "autopilot.yaml" in failed

    # What runs where: frontend in dev and prod runs 1.4.2.
    cells = page.eval_on_selector_all("#matrix td.cell", "els => els.map(e => [e.dataset.service, e.dataset.env, "
                                      "e.querySelector('code').textContent])")
    assert ["frontend", "dev", "1.4.2"] in cells and ["frontend", "prod", "1.4.2"] in cells
    assert page.text_content("#queues tr[data-queue='image-pushed'] td[data-poison]").strip().endswith("1")
    assert "healthy" in page.text_content("#health")

    # Hostile values render as text: nothing ran, no element was injected.
    hostile = next(r["text"] for r in shown if XSS_SERVICE in r["text"])
    assert XSS_TAG in hostile and XSS_REASON in hostile
    assert page.evaluate("window.__xss") is None
    assert page.locator("#deployments img, #deployments script").count() == 0
    # ... and the CSP forbids injected inline script even if something were injected.
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__csp = 1';"
                  " document.body.append(s); }")
    assert page.evaluate("window.__csp") is None
    assert not dialogs

    assert page.evaluate(CONTRAST_JS) == []

    # Times are the viewer's (New York here) with UTC on hover.
    title = page.get_attribute("#deployments li.dep time", "title")
    assert title and title.endswith(" UTC")

    # A filter narrows the rows and lives in the URL (a reload keeps it).
    page.select_option("#f-state", "failed")
    until(page, "[...document.querySelectorAll('#deployments li.dep')].every(e => e.dataset.state === "
                           "'failed')")
    assert [r["state"] for r in rows(page)] == ["failed"]
    assert "state=failed" in page.url and f"code={MASTER}" in page.url
    assert "code=" not in page.input_value("#share") and "state=failed" in page.input_value("#share")
    page.reload()
    page.wait_for_selector("#deployments li.dep")
    assert page.input_value("#f-state") == "failed" and [r["state"] for r in rows(page)] == ["failed"]
    page.click("#clear")
    page.fill("#f-tag", "1.4")
    until(page, "document.querySelectorAll('#deployments li.dep').length === 2")
    assert all("1.4.2" in r["text"] for r in rows(page)) and "tag=1.4" in page.url
    page.click("#clear")
    until(page, "document.querySelectorAll('#deployments li.dep').length >= 6")

    # Phone width: the page reflows (no horizontal scrolling of the page itself).
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "dashboard-390x844.png"))
    page.screenshot(path=str(tmp_path / "dashboard-390-full.png"), full_page=True)

    # Auto-refresh keeps the filter and the scroll position.
    page.select_option("#f-env", "dev")
    until(page, "[...document.querySelectorAll('#deployments li.dep')].length >= 3")
    page.evaluate("window.scrollTo(0, 400)")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    TraceLog(storage).record("1" * 32, "late-target", "received", actor="test",
                             fields={"service": "backend", "env": "dev", "imageTag": "2.0.4",
                                     "image": "fabrikam.azurecr.io/fabrikam/backend"})
    until(page, "document.body.innerText.includes('backend:2.0.4')")
    assert page.evaluate("window.scrollY") == scrolled and page.input_value("#f-env") == "dev"
    page.select_option("#f-env", "")
    page.set_viewport_size({"width": 1280, "height": 800})

    # The replay button, reached with the keyboard, empties the poison queue once the cause is fixed.
    push_files(hld, "main", {"autopilot.yaml": good_policy}, "Repair autopilot.yaml")
    page.evaluate("window.scrollTo(0, 0)")
    page.focus("#refresh")
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.focus") == "replay:image-pushed":
            break
    else:
        raise AssertionError("the replay button is not reachable with Tab")
    page.keyboard.press("Enter")
    wait_for(lambda: storage.queue_depth(poison_queue(IMAGE_PUSHED)) == 0, "the poison queue to be emptied")
    until(page, "document.querySelector(\"#queues tr[data-queue='image-pushed'] td[data-poison]\")"
                           ".dataset.poison === '0'")
    assert dialogs == ["confirm: Move 1 message(s) from image-pushed-poison back to image-pushed to be processed "
                       "again?"]
    assert "Moved 1 message(s)" in page.text_content("#toast")
    wait_for(lambda: any("1.5.0" in c.subject for c in commits(manifests, "main")), "the replayed push's manifests")
    until(page, "[...document.querySelectorAll('#matrix td.cell code')].some(e => e.textContent === "
                           "'1.5.0')")
    # The failure is now a stage of the replayed push's chain, which ended in the manifests.
    until(page, "document.querySelectorAll(\"#deployments li.dep[data-state='failed']\").length === 0")
    replayed = [r for r in rows(page) if "frontend:1.5.0" in r["text"]]
    assert len(replayed) == 2, replayed
    for r in replayed:
        assert r["state"] == "deployed" and re.search(r"received.*failed in image-pushed.*HLD commit.*manifest commit",
                                                      r["text"].replace("\n", " "))
    page.screenshot(path=str(tmp_path / "dashboard-after-replay.png"), full_page=True)

    # A target a person's rollback paused is listed with its reason; Resume lifts the pause.
    from core.adapters.promotion_records import Pauses
    Pauses(storage).pause("frontend", "prod", "a person set 1.4.0 below 1.5.0 <b>bold?</b>")
    until(page, "document.querySelector(\"#paused tr[data-paused='frontend/prod']\") !== null")
    assert "<b>bold?</b>" in page.text_content("#paused")   # text, not markup
    dialogs.clear()
    page.click("#paused button[data-focus='resume:frontend/prod']")
    wait_for(lambda: Pauses(storage).listed() == [], "the pause to be lifted")
    until(page, "document.querySelector(\"#paused tr[data-paused='frontend/prod']\") === null")
    assert dialogs and dialogs[0].startswith("confirm: Resume automation for frontend in prod?")
    assert "Resumed frontend in prod" in page.text_content("#toast")
    for name in ("dashboard-1280x800.png", "dashboard-390x844.png"):
        assert (tmp_path / name).stat().st_size > 10_000
