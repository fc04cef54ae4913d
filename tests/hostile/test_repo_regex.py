"""Hostile regexes in autopilot.yaml (issue #16, item 1).

Python's `re` backtracks while holding the GIL, so one catastrophic `tagFilter`, numeric `extract` or rule glob
froze every function of the process. Repo-provided patterns now run on RE2 (linear time, the engine Flux,
Argo CD Image Updater and Kargo use through Go's regexp), and a pattern RE2 cannot compile is refused when the
policy loads, naming `autopilot.yaml:LINE`.
"""
from __future__ import annotations

import statistics
import threading
import time

import pytest

from core.rules.bump_decision import decide_bump, newest
from core.rules.policy import PolicyError, load_policy
from core.rules.tag_order import Ordering, TagOrder, sort_key
from devkit.gitrepos import bare_repo, branches
from tests.test_bump import REGISTRY, make_service, push
from tests.fakes.records import records  # noqa: F401  (the fixture)

EVIL = "^(a+)+$"
SLOW_TAGS = ["a" * 40 + "!", "a" * 40 + "-"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tag", SLOW_TAGS)
def test_catastrophic_tag_filter_answers_at_once(tag):
    policy = load_policy(f"defaults:\n  tagFilter: '{EVIL}'\n")
    started = time.perf_counter()
    decision = decide_bump(tag, "1.0.0", None, policy.default_target, "prod")
    assert time.perf_counter() - started < 1.0
    assert decision.action == "skip" and "filtered out by tagFilter" in decision.reason
    assert newest([(tag, None), ("aaaa", None)], policy.default_target) is None  # "aaaa" is not semver


@pytest.mark.timeout(60)
def test_catastrophic_numeric_extract_answers_at_once():
    order = TagOrder(Ordering.NUMERIC, r"^(?P<n>(\d+)+)$")
    started = time.perf_counter()
    assert sort_key("1" * 40 + "x", order) is None
    assert sort_key("42", order) == (42,)
    assert time.perf_counter() - started < 1.0


@pytest.mark.timeout(60)
def test_catastrophic_rule_glob_answers_at_once():
    # `*/*a*a...*b` became `[^/]*/[^/]*a[^/]*a...[^/]*b`: polynomial backtracking, ~40 s for 35 characters.
    policy = load_policy("rules:\n  - image: '*/" + "*a" * 12 + "*b'\n    paused: true\n")
    started = time.perf_counter()
    target = policy.for_target(f"{REGISTRY}/" + "a" * 120, "prod/web.yaml")
    assert time.perf_counter() - started < 1.0
    assert target is policy.default_target


@pytest.mark.parametrize("pattern, problem", [
    (r"^(a)\1$", "invalid escape sequence"),
    (r"^v(?=\d)", "invalid perl operator"),
    (r"(?<!rc)$", "invalid perl operator"),
])
def test_pattern_re2_cannot_run_is_refused_at_load_with_file_and_line(pattern, problem):
    text = f"defaults:\n  ordering: semver\nrules:\n  - image: '*/web'\n    tagFilter: '{pattern}'\n"
    with pytest.raises(PolicyError) as raised:
        load_policy(text)
    message = str(raised.value)
    assert message.startswith("autopilot.yaml:5: rules[0].tagFilter")
    assert problem in message and "RE2" in message
    assert "\n" not in message


def test_re2_keeps_named_groups_and_search_semantics():
    policy = load_policy("defaults:\n  ordering: numeric\n  tagFilter: '^main-(?P<n>\\d+)$'\n")
    target = policy.default_target
    assert decide_bump("main-10", "main-9", None, target, "prod").action == "bump"
    assert decide_bump("main-10\n", "main-9", None, target, "prod").action == "skip"  # `$` is end of text
    assert decide_bump("feature-99", "main-9", None, target, "prod").action == "skip"


@pytest.mark.timeout(120)
def test_other_functions_keep_answering_while_a_bump_meets_a_catastrophic_filter(tmp_path, records):
    url = bare_repo(tmp_path, {
        "autopilot.yaml": f"rules:\n  - image: '*/web'\n    tagFilter: '{EVIL}'\n",
        "prod/web.yaml": f"kind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - image: {REGISTRY}/web:1.0.0\n",
    }, name="m")
    service = make_service(url, records, tmp_path, is_hld=False)
    head = branches(url)["main"]
    results: list = []
    bump = threading.Thread(target=lambda: results.append(service.process([push("web", SLOW_TAGS[1])])))
    probe_policy = "defaults:\n  tagFilter: '^v?\\d+\\.\\d+\\.\\d+$'\n"
    latencies: list[float] = []
    bump.start()
    deadline = time.monotonic() + 60
    # Probe until the bump is over (and at least 50 times): every call is a plain Python function that needs the
    # GIL, as an HTTP function would. Bounded by count and time.
    while (bump.is_alive() or len(latencies) < 50) and time.monotonic() < deadline and len(latencies) < 100_000:
        started = time.perf_counter()
        load_policy(probe_policy).default_target.tag_filter.search("1.2.3")
        latencies.append(time.perf_counter() - started)
        time.sleep(0.002)
    bump.join(timeout=60)
    assert not bump.is_alive(), "the bump never finished"
    [result] = results
    assert result.commit is None and {o.action for o in result.outcomes} == {"skip"}
    assert branches(url)["main"] == head
    # The backtracking engine held the GIL for minutes here; RE2 answers in microseconds. Typical probes must meet
    # the 100 ms; a single probe may lose its core to the other test worker on a loaded 2-core machine, so
    # the worst one is held to a bound a frozen GIL could never meet, not to 100 ms.
    assert statistics.median(latencies) < 0.1
    assert sorted(latencies)[int(len(latencies) * 0.95)] < 0.1
    assert max(latencies) < 0.5, f"slowest probe {max(latencies):.3f} s"
