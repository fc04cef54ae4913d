from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from core.rules.tag_order import (
    Ordering, PolicyError, TagOrder, UnorderableTag, change_level, compare, in_range, parse_semver, sort_key,
)

SEMVER = TagOrder()
NUMERIC = TagOrder(Ordering.NUMERIC)
ALPHA = TagOrder(Ordering.ALPHABETICAL)
PUSHED = TagOrder(Ordering.PUSHED)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


# --- semver ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["1234567", "20200212", "20200212.1", "1.2", "latest", "v", "01.2.3", "1.2.3.4",
                                 "vv1.2.3", "V1.2.3", " 1.2.3", "1.2.3\n", "1.2.3 ", "master-42", "1.2.3-"])
def test_semver_rejects_non_strict_versions(tag):
    assert sort_key(tag, SEMVER) is None
    with pytest.raises(UnorderableTag, match="not orderable under semver"):
        compare(tag, "1.0.0", SEMVER)


def test_semver_accepts_leading_v_and_treats_it_as_the_same_version():
    assert compare("v1.2.3", "1.2.3", SEMVER) == 0
    assert compare("v1.10.0", "1.9.0", SEMVER) == 1


def test_numeric_sha_does_not_outrank_real_release():
    # flux#2729: a SHA that happens to be all digits must not be taken for version 1234567.0.0
    assert sort_key("1234567", SEMVER) is None
    assert compare("2.0.0", "1.999.999", SEMVER) == 1


@pytest.mark.parametrize("older,newer", [
    ("1.0.0-alpha", "1.0.0"),
    ("1.0.0-alpha", "1.0.0-alpha.1"),
    ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
    ("1.0.0-beta.2", "1.0.0-beta.11"),
    ("1.0.0-rc.1", "1.0.0"),
    ("0.9.9", "1.0.0-alpha"),
    ("1.9.0", "1.10.0"),
    ("1.2.3", "1.2.10"),
])
def test_semver_precedence(older, newer):
    assert compare(older, newer, SEMVER) == -1
    assert compare(newer, older, SEMVER) == 1


def test_semver_build_metadata_is_ignored():
    assert compare("1.2.3+build.1", "1.2.3+build.2", SEMVER) == 0


def test_parse_semver_returns_the_version():
    v = parse_semver("v2.3.4-rc.1")
    assert (v.major, v.minor, v.patch, v.prerelease) == (2, 3, 4, "rc.1")
    assert parse_semver("2.3") is None


# --- numeric -----------------------------------------------------------------------------------------------------

def test_numeric_whole_tag():
    assert compare("10", "9", NUMERIC) == 1
    assert compare("007", "7", NUMERIC) == 0
    assert sort_key("1.2.3", NUMERIC) is None
    assert sort_key("", NUMERIC) is None
    assert sort_key("٣", NUMERIC) is None  # non-ASCII digit


def test_numeric_extract_single_group():
    order = TagOrder(Ordering.NUMERIC, r"^master-(?P<n>\d+)$")
    assert compare("master-100", "master-99", order) == 1
    assert sort_key("feature-100", order) is None
    assert sort_key("master-abc", order) is None


def test_numeric_extract_several_groups_compare_in_pattern_order():
    order = TagOrder(Ordering.NUMERIC, r"^(?P<date>\d+)\.(?P<build>\d+)$")
    assert sort_key("20200212.10", order) == (20200212, 10)
    assert compare("20200212.10", "20200212.9", order) == 1
    assert compare("20200213.1", "20200212.99", order) == 1
    # group order follows the pattern, not the group names
    order_rev = TagOrder(Ordering.NUMERIC, r"^(?P<b>\d+)-(?P<a>\d+)$")
    assert sort_key("3-1", order_rev) == (3, 1)


def test_numeric_extract_rejects_non_digit_capture_and_missing_optional_group():
    assert sort_key("x-12ab", TagOrder(Ordering.NUMERIC, r"^x-(?P<n>\w+)$")) is None
    assert sort_key("x-", TagOrder(Ordering.NUMERIC, r"^x-(?P<n>\d+)?$")) is None


def test_numeric_extract_needs_named_group():
    with pytest.raises(PolicyError, match="no named group"):
        TagOrder(Ordering.NUMERIC, r"^master-(\d+)$")


def test_bad_extract_regex_and_bad_ordering():
    with pytest.raises(PolicyError, match="invalid regex"):
        TagOrder(Ordering.NUMERIC, r"^(?P<n>\d+")
    with pytest.raises(PolicyError, match="unknown ordering 'newest'"):
        TagOrder("newest")
    with pytest.raises(PolicyError, match="only to numeric or alphabetical"):
        TagOrder(Ordering.SEMVER, r"(?P<n>\d+)")


def test_ordering_given_as_string_is_normalised():
    assert TagOrder("numeric").ordering is Ordering.NUMERIC


# --- alphabetical / pushed ---------------------------------------------------------------------------------------

def test_alphabetical_is_plain_string_order():
    assert compare("2024.05.01", "2024.04.30", ALPHA) == 1
    assert compare("b", "a10", ALPHA) == 1
    assert compare("10", "9", ALPHA) == -1
    assert compare("latest", "latest", ALPHA) == 0


def test_alphabetical_extract_compares_captures():
    order = TagOrder(Ordering.ALPHABETICAL, r"^main-(?P<ts>\d{8}T\d{6})-[0-9a-f]+$")
    assert compare("main-20240502T000000-aaaa", "main-20240501T235959-ffff", order) == 1
    assert sort_key("release-1", order) is None


def test_pushed_orders_by_timestamp_then_name():
    assert compare("a", "b", PUSHED, T0 + timedelta(seconds=1), T0) == 1
    assert compare("b", "a", PUSHED, T0, T0) == 1
    assert compare("a", "a", PUSHED, T0, T0) == 0


def test_pushed_without_timestamp_is_unorderable():
    assert sort_key("a", PUSHED) is None
    with pytest.raises(UnorderableTag, match="no push timestamp"):
        compare("a", "b", PUSHED, None, T0)


def test_pushed_naive_timestamp_is_utc_and_offsets_are_normalised():
    naive = datetime(2024, 5, 1, 12, 0)
    plus_two = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert compare("a", "a", PUSHED, naive, T0) == 0
    assert compare("a", "a", PUSHED, plus_two, T0) == 0


# --- change_level ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("old,new,level", [
    ("1.2.3", "1.2.4", "patch"),
    ("1.2.3", "1.3.0", "minor"),
    ("1.2.3", "2.0.0", "major"),
    ("1.2.3-rc.1", "1.2.3", "patch"),
    ("v1.2.3", "1.4.0", "minor"),
    ("1.2.3", "1.2.3", None),
    ("1.2.3", "1.2.2", None),
    ("2.0.0", "1.9.9", None),
    ("latest", "1.0.0", "major"),
])
def test_change_level_semver(old, new, level):
    assert change_level(old, new, SEMVER) == level


def test_change_level_non_semver_counts_as_major():
    assert change_level("41", "42", NUMERIC) == "major"
    assert change_level("42", "41", NUMERIC) is None
    assert change_level("a", "b", ALPHA) == "major"
    assert change_level("a", "b", PUSHED, T0, T0 + timedelta(1)) == "major"
    assert change_level("b", "a", PUSHED, T0 + timedelta(1), T0) is None


def test_change_level_unorderable_new_raises():
    with pytest.raises(UnorderableTag):
        change_level("1.0.0", "latest", SEMVER)


# --- ranges ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("constraint,inside,outside", [
    (">=1.4.0 <2.0.0", ["1.4.0", "1.9.9", "v1.5.0"], ["1.3.9", "2.0.0", "2.0.0-rc.1", "1.5.0-rc.1"]),
    (">=1.4.0, <2.0.0", ["1.4.0"], ["2.0.0"]),
    (">= 1.4.0 , < 2", ["1.4.0", "1.99.0"], ["2.0.0"]),
    ("^1.2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0"]),
    ("^1.2.3", ["1.2.3", "1.99.0"], ["1.2.2", "2.0.0"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
    ("^0.0", ["0.0.9"], ["0.1.0"]),
    ("^0", ["0.9.0"], ["1.0.0"]),
    ("~1.2.3", ["1.2.3", "1.2.99"], ["1.3.0", "1.2.2"]),
    ("~>1.2.3", ["1.2.4"], ["1.3.0"]),
    ("~1.2", ["1.2.0", "1.2.9"], ["1.3.0"]),
    ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
    ("1.x", ["1.0.0", "1.99.99"], ["0.9.9", "2.0.0"]),
    ("1.2.*", ["1.2.0", "1.2.7"], ["1.3.0"]),
    ("1.X.x", ["1.5.0"], ["2.0.0"]),
    ("1", ["1.4.0"], ["2.0.0"]),
    ("*", ["0.0.1", "99.0.0"], ["1.0.0-rc.1"]),
    ("x", ["3.0.0"], []),
    ("=1.2.3", ["1.2.3", "v1.2.3", "1.2.3+meta"], ["1.2.4"]),
    ("1.2.3", ["1.2.3"], ["1.2.4"]),
    ("!=1.2.3 >=1.0.0", ["1.2.4", "1.0.0"], ["1.2.3"]),
    ("!=1.4", ["1.3.9", "1.5.0"], ["1.4.0", "1.4.7"]),
    (">1.4.0", ["1.4.1"], ["1.4.0"]),
    (">1.4", ["1.5.0"], ["1.4.9"]),
    (">1", ["2.0.0"], ["1.9.9"]),
    ("<=1.4", ["1.4.9"], ["1.5.0"]),
    ("<=1.4.0", ["1.4.0"], ["1.4.1"]),
    ("<1.4", ["1.3.9"], ["1.4.0"]),
    (">=2.0.0-rc.1", ["2.0.0-rc.1", "2.0.0-rc.2", "2.0.0", "3.1.0-beta"], ["2.0.0-beta.9", "1.9.0"]),
    ("1.2.3 || ^2.1", ["1.2.3", "2.1.0", "2.9.0"], ["1.2.4", "3.0.0", "2.0.9"]),
])
def test_in_range(constraint, inside, outside):
    for tag in inside:
        assert in_range(tag, constraint), (tag, constraint)
    for tag in outside:
        assert not in_range(tag, constraint), (tag, constraint)


def test_in_range_non_semver_tag_is_outside():
    assert not in_range("1234567", "*")
    assert not in_range("latest", ">=0.0.0")


@pytest.mark.parametrize("constraint", ["", "   ", ">=", "abc", "1.2.3.4", ">=1.x.3", "1.2-rc.1", ">x", "<*", "||",
                                        "1.0.0 ||", ">=1.4.0<2.0.0", "01.2.3", ">=1.2.3-01", "=>1.0.0", "1.2.3 foo"])
def test_bad_constraints_raise_policy_error(constraint):
    with pytest.raises(PolicyError, match="invalid range"):
        in_range("1.0.0", constraint)


# --- properties --------------------------------------------------------------------------------------------------

versions = st.builds(
    lambda ma, mi, pa, pre, v: f"{'v' if v else ''}{ma}.{mi}.{pa}{pre}",
    st.integers(0, 5), st.integers(0, 5), st.integers(0, 5),
    st.sampled_from(["", "-alpha", "-alpha.1", "-beta.2", "-beta.11", "-rc.1", "-1", "-rc.1.a"]),
    st.booleans(),
)


@given(versions, versions)
def test_compare_is_antisymmetric(a, b):
    assert compare(a, b, SEMVER) == -compare(b, a, SEMVER)


@given(versions, versions, versions)
def test_compare_is_transitive(a, b, c):
    if compare(a, b, SEMVER) <= 0 and compare(b, c, SEMVER) <= 0:
        assert compare(a, c, SEMVER) <= 0


@given(versions, versions)
def test_change_level_is_set_exactly_when_newer(a, b):
    assert (change_level(a, b, SEMVER) is not None) == (compare(b, a, SEMVER) == 1)


@given(versions)
def test_caret_range_matches_its_definition(tag):
    v = parse_semver(tag)
    expected = not v.prerelease and (1, 2, 0) <= (v.major, v.minor, v.patch) < (2, 0, 0)
    assert in_range(tag, "^1.2") == expected
