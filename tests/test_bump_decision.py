import re
from datetime import datetime, timedelta, timezone

from hypothesis import given, strategies as st

from core.rules.bump_decision import BumpDecision, decide_bump, newest
from core.rules.policy import TargetPolicy, load_policy
from core.rules.tag_order import Ordering, TagOrder, compare, sort_key

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def target(ordering: Ordering = Ordering.SEMVER, extract: str | None = None, tag_filter: str | None = None,
           range_: str | None = None, environments: set[str] | None = None, paused: bool = False,
           rule_index: int | None = None) -> TargetPolicy:
    return TargetPolicy(
        order=TagOrder(ordering, extract),
        tag_filter=None if tag_filter is None else re.compile(tag_filter),
        range=range_,
        environments=None if environments is None else frozenset(environments),
        auto_approve="none",
        paused=paused,
        rule_index=rule_index,
    )


SEMVER = target()
SEMVER_ORDER = TagOrder()


# --- each rule in order ------------------------------------------------------------------------------------------

def test_paused_skips_even_a_newer_tag():
    decision = decide_bump("2.0.0", "1.0.0", None, target(paused=True, rule_index=3), "prod")
    assert decision == BumpDecision("skip", "automation is paused by autopilot.yaml rules[3]")
    assert decide_bump("2.0.0", "1.0.0", None, target(paused=True), "prod").reason == \
        "automation is paused by autopilot.yaml"


def test_environment_not_allowed_skips():
    policy = target(environments={"dev", "staging"})
    decision = decide_bump("2.0.0", "1.0.0", None, policy, "prod")
    assert decision.action == "skip"
    assert decision.reason == "environment 'prod' is not among the allowed environments [dev, staging]"
    assert decide_bump("2.0.0", "1.0.0", None, policy, "dev").action == "bump"


def test_environment_unrestricted_allows_any():
    assert decide_bump("2.0.0", "1.0.0", None, SEMVER, "anything").action == "bump"


def test_tag_filter_mismatch_skips():
    policy = target(tag_filter=r"^v?\d+\.\d+\.\d+$")
    decision = decide_bump("latest", "1.0.0", None, policy, "prod")
    assert decision.action == "skip"
    assert decision.reason == r"tag 'latest' filtered out by tagFilter '^v?\d+\.\d+\.\d+$'"
    # the filter rejects a prerelease the ordering would accept
    assert decide_bump("2.0.0-rc.1", "1.0.0", None, policy, "prod").action == "skip"


def test_tag_filter_is_a_search_not_a_full_match():
    assert decide_bump("release-2.0.0", None, None, target(ordering=Ordering.ALPHABETICAL, tag_filter="release"),
                       "prod").action == "bump"


def test_unorderable_candidate_skips():
    decision = decide_bump("1234567", "1.0.0", None, SEMVER, "prod")
    assert decision == BumpDecision("skip", "tag '1234567' is not orderable under semver ordering")


def test_pushed_ordering_without_candidate_timestamp_skips():
    decision = decide_bump("b", "a", None, target(Ordering.PUSHED), "prod", current_pushed=T0)
    assert decision.action == "skip" and "not orderable under pushed" in decision.reason


def test_outside_range_skips():
    policy = target(range_=">=1.4.0 <2.0.0")
    decision = decide_bump("2.0.0", "1.4.0", None, policy, "prod")
    assert decision == BumpDecision("skip", "tag '2.0.0' is outside range '>=1.4.0 <2.0.0'")
    assert decide_bump("1.9.0", "1.4.0", None, policy, "prod").action == "bump"


def test_equal_to_current_is_noop():
    assert decide_bump("1.4.0", "1.4.0", "1.4.0", SEMVER, "prod") == BumpDecision("noop", "1.4.0 is already current")
    assert decide_bump("v1.4.0", "1.4.0", None, SEMVER, "prod") == \
        BumpDecision("noop", "v1.4.0 is already current (as 1.4.0)")


def test_equal_to_current_is_noop_even_below_high_water():
    assert decide_bump("1.4.0", "1.4.0", "1.9.0", SEMVER, "prod").action == "noop"


def test_older_than_current_never_downgrades():
    decision = decide_bump("1.3.0", "1.4.0", None, SEMVER, "prod")
    assert decision == BumpDecision("skip", "1.3.0 is older than current 1.4.0; never downgrade")


def test_not_newer_than_high_water_skips():
    # the HLD was rolled back by a human to 1.2.0 after 1.5.0 was applied; a replay of 1.5.0 must not re-apply it
    decision = decide_bump("1.5.0", "1.2.0", "1.5.0", SEMVER, "prod")
    assert decision.action == "skip"
    assert decision.reason.startswith("1.5.0 is not newer than high-water mark 1.5.0")
    assert decide_bump("1.4.0", "1.2.0", "1.5.0", SEMVER, "prod").action == "skip"
    assert decide_bump("1.6.0", "1.2.0", "1.5.0", SEMVER, "prod") == \
        BumpDecision("bump", "1.6.0 is newer than current 1.2.0", "1.6.0")


def test_unorderable_current_does_not_block():
    decision = decide_bump("1.0.0", "latest", None, SEMVER, "prod")
    assert decision == BumpDecision(
        "bump", "current tag latest is not orderable under semver ordering; applying 1.0.0", "1.0.0")


def test_unorderable_high_water_does_not_block():
    # a high-water mark recorded under an earlier ordering has no place in the new one
    policy = target(Ordering.NUMERIC, extract=r"^build-(?P<n>\d+)$")
    assert decide_bump("build-7", "build-6", "1.9.0", policy, "prod").action == "bump"


def test_no_current_tag_bumps():
    assert decide_bump("1.0.0", None, None, SEMVER, "prod") == \
        BumpDecision("bump", "no current tag; applying 1.0.0", "1.0.0")


def test_first_failing_rule_wins():
    policy = target(tag_filter="^v", range_=">=2.0.0", environments={"dev"}, paused=True)
    assert "paused" in decide_bump("latest", "9.0.0", "9.0.0", policy, "prod").reason
    policy = target(tag_filter="^v", range_=">=2.0.0", environments={"dev"})
    assert "environment" in decide_bump("latest", "9.0.0", "9.0.0", policy, "prod").reason
    assert "filtered out" in decide_bump("latest", "9.0.0", "9.0.0", policy, "dev").reason
    assert "not orderable" in decide_bump("v1", "9.0.0", "9.0.0", policy, "dev").reason
    assert "outside range" in decide_bump("v1.0.0", "9.0.0", "9.0.0", policy, "dev").reason
    assert "older than current" in decide_bump("v3.0.0", "9.0.0", "1.0.0", policy, "dev").reason


# --- other orderings ---------------------------------------------------------------------------------------------

def test_numeric_build_numbers():
    policy = target(Ordering.NUMERIC, extract=r"^master-(?P<n>\d+)$", tag_filter=r"^master-(?P<n>\d+)$")
    assert decide_bump("master-100", "master-99", None, policy, "prod").action == "bump"
    assert decide_bump("master-99", "master-100", None, policy, "prod").action == "skip"
    assert decide_bump("feature-500", "master-100", None, policy, "prod").action == "skip"


def test_date_dot_build_numbers():
    policy = target(Ordering.NUMERIC, extract=r"^(?P<d>\d+)\.(?P<b>\d+)$")
    assert decide_bump("20200212.10", "20200212.9", None, policy, "prod").action == "bump"
    assert decide_bump("20200211.99", "20200212.1", None, policy, "prod").action == "skip"


def test_pushed_ordering_uses_timestamps():
    policy = target(Ordering.PUSHED)
    later = T0 + timedelta(minutes=5)
    assert decide_bump("aaa", "zzz", None, policy, "prod", later, T0).action == "bump"
    assert decide_bump("zzz", "aaa", None, policy, "prod", T0, later).action == "skip"
    assert decide_bump("zzz", "aaa", "yyy", policy, "prod", later, T0, later + timedelta(1)).action == "skip"
    # without the current tag's timestamp, the current tag is no reference point
    assert decide_bump("zzz", "aaa", None, policy, "prod", T0).action == "bump"


def test_with_policy_from_yaml():
    policy = load_policy(
        "rules:\n"
        "  - image: 'acr.io/app'\n"
        "    ordering: numeric\n"
        "    tagFilter: '^master-(?P<n>\\d+)$'\n"
        "    environments: [dev]\n"
    ).for_target("acr.io/app", "hld/app/dev/config/common.yaml")
    assert decide_bump("master-12", "master-11", "master-11", policy, "dev").new_tag == "master-12"
    assert decide_bump("master-12", "master-11", None, policy, "prod").action == "skip"


# --- newest ------------------------------------------------------------------------------------------------------

def test_newest_of_a_batch():
    tags = [("1.2.0", None), ("1234567", None), ("latest", None), ("1.10.0", None), ("1.9.0", None),
            ("2.0.0-rc.1", None)]
    assert newest(tags, SEMVER) == "2.0.0-rc.1"
    assert newest(tags, target(range_="^1")) == "1.10.0"
    assert newest(tags, target(tag_filter=r"^1\.[0-9]\.")) == "1.9.0"
    assert newest([("latest", None)], SEMVER) is None
    assert newest([], SEMVER) is None


def test_newest_ties_are_deterministic():
    assert newest([("1.0.0", None), ("v1.0.0", None)], SEMVER) == "v1.0.0"
    assert newest([("v1.0.0", None), ("1.0.0", None)], SEMVER) == "v1.0.0"


def test_newest_by_push_time_skips_tags_without_timestamp():
    tags = [("a", T0), ("b", T0 - timedelta(1)), ("c", None)]
    assert newest(tags, target(Ordering.PUSHED)) == "a"


# --- properties --------------------------------------------------------------------------------------------------

semvers = st.builds(lambda a, b, c, pre: f"{a}.{b}.{c}{pre}", st.integers(0, 3), st.integers(0, 3),
                    st.integers(0, 3), st.sampled_from(["", "-rc.1", "-rc.2", "-alpha"]))
any_tags = st.one_of(semvers, st.sampled_from(["latest", "1234567", "v1.0.0", "master-3"]))


@given(semvers, st.one_of(st.none(), any_tags), st.one_of(st.none(), any_tags))
def test_never_bumps_to_a_tag_lower_than_current_or_high_water(candidate, current, high_water):
    decision = decide_bump(candidate, current, high_water, SEMVER, "prod")
    if decision.action == "bump":
        assert decision.new_tag == candidate
        for reference in (current, high_water):
            if reference is not None and sort_key(reference, SEMVER_ORDER) is not None:
                assert compare(candidate, reference, SEMVER_ORDER) == 1
    else:
        assert decision.new_tag is None


@given(st.lists(semvers, min_size=1, max_size=6))
def test_newest_is_not_older_than_any_allowed_tag(tags):
    best = newest([(t, None) for t in tags], SEMVER)
    assert all(compare(best, t, SEMVER_ORDER) >= 0 for t in tags)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_numeric_never_bumps_below_references(candidate, current, high_water):
    policy = target(Ordering.NUMERIC)
    decision = decide_bump(str(candidate), str(current), str(high_water), policy, "prod")
    assert (decision.action == "bump") == (candidate > current and candidate > high_water)
