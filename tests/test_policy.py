import io
import re
import textwrap

import pytest
from hypothesis import given, settings, strategies as st
from ruamel.yaml import YAML

from core.rules.policy import Policy, PolicyError, auto_approves, load_policy
from core.rules.tag_order import Ordering, TagOrder

FULL = textwrap.dedent("""\
    # autopilot.yaml
    environments: [prod, staging]
    helmMode: helmrelease
    mergeStrategy: rebase
    paused: false
    autoApprove: minor
    allowedAuthors: [alice@fabrikam.com, 1b3c5d]
    defaults:
      ordering: semver
      tagFilter: '^v?\\d+\\.\\d+\\.\\d+$'
      range: '>=1.0.0'
    rules:
      - image: "myacr.azurecr.io/app-*"
        path: "fabrikam-project/**"
        tagFilter: '^master-(?P<n>\\d+)$'
        ordering: numeric
        range: null
        environments: [dev, staging]
        autoApprove: patch
        paused: true
      - image: "myacr.azurecr.io/app-*"
        range: ">=1.4.0 <2.0.0"
      - path: "**/legacy/*.yaml"
        ordering: pushed
        tagFilter: null
        range: null
    """)


def error_for(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(textwrap.dedent(text))
    return str(info.value)


# --- defaults and a full file ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [None, "", "  \n", "# only a comment\n", "---\n"])
def test_missing_or_empty_file_gives_defaults(text):
    policy = load_policy(text)
    assert policy == Policy()
    assert policy.environments == ("prod",)
    assert policy.merge_strategy == "squash"
    assert policy.helm_mode is None
    assert not policy.paused
    assert policy.auto_approve == "none"
    assert policy.allowed_authors == ()
    target = policy.for_target("myacr.azurecr.io/app", "svc/config/common.yaml")
    assert target.order == TagOrder(Ordering.SEMVER)
    assert target.tag_filter is None and target.range is None and target.environments is None
    assert target.auto_approve == "none" and not target.paused and target.rule_index is None


def test_full_file_top_level_settings():
    policy = load_policy(FULL)
    assert policy.environments == ("prod", "staging")
    assert policy.helm_mode == "helmrelease"
    assert policy.merge_strategy == "rebase"
    assert policy.auto_approve == "minor"
    assert policy.allowed_authors == ("alice@fabrikam.com", "1b3c5d")
    assert all(type(a) is str for a in policy.allowed_authors)


def test_first_rule_numeric_target():
    target = load_policy(FULL).for_target("myacr.azurecr.io/app-web", "fabrikam-project/web/dev/config/common.yaml")
    assert target.rule_index == 0
    assert target.order == TagOrder(Ordering.NUMERIC, r"^master-(?P<n>\d+)$")
    assert target.tag_filter.pattern == r"^master-(?P<n>\d+)$"
    assert target.range is None  # null cleared the default range
    assert target.environments == frozenset({"dev", "staging"})
    assert target.auto_approve == "patch"
    assert target.paused


def test_second_rule_inherits_default_filter_and_global_auto_approve():
    target = load_policy(FULL).for_target("myacr.azurecr.io/app-web", "other-project/web/config/common.yaml")
    assert target.rule_index == 1
    assert target.order == TagOrder(Ordering.SEMVER)
    assert target.tag_filter.pattern == r"^v?\d+\.\d+\.\d+$"
    assert target.range == ">=1.4.0 <2.0.0"
    assert target.environments is None
    assert target.auto_approve == "minor"
    assert not target.paused


def test_path_only_rule_and_fallback_to_defaults():
    policy = load_policy(FULL)
    legacy = policy.for_target("myacr.azurecr.io/db", "a/b/legacy/values.yaml")
    assert legacy.rule_index == 2
    assert legacy.order == TagOrder(Ordering.PUSHED)
    assert legacy.tag_filter is None and legacy.range is None
    fallback = policy.for_target("myacr.azurecr.io/db", "a/b/legacy/sub/values.yaml")
    assert fallback.rule_index is None
    assert fallback.range == ">=1.0.0"
    assert fallback.tag_filter.pattern == r"^v?\d+\.\d+\.\d+$"
    assert fallback.auto_approve == "minor"


# --- rule matching -----------------------------------------------------------------------------------------------

RULES = textwrap.dedent("""\
    rules:
      - image: "acr.azurecr.io/team/*"
        path: "hld/**"
        autoApprove: major
      - image: "acr.azurecr.io/team/*"
        autoApprove: minor
      - path: "hld/*/config/common.yaml"
        autoApprove: patch
      - image: "acr.azurecr.io/t?am-[!x]*"
        autoApprove: patch
      - path: "**/ring-[0-9]/*.yaml"
        autoApprove: patch
    """)


@pytest.mark.parametrize("image,path,index", [
    ("acr.azurecr.io/team/web", "hld/svc/dev/config/common.yaml", 0),
    ("ACR.azurecr.io/Team/web", "hld/x.yaml", 0),                 # image globs are case-insensitive
    ("acr.azurecr.io/team/web", "./hld/x.yaml", 0),               # leading ./ is ignored
    ("acr.azurecr.io/team/web", "other/x.yaml", 1),               # both must match for rule 0
    ("acr.azurecr.io/team/web/sub", "other/x.yaml", None),        # * stays within one segment
    ("acr.azurecr.io/other", "hld/svc/config/common.yaml", 2),
    ("acr.azurecr.io/other", "hld/svc/dev/config/common.yaml", None),
    ("acr.azurecr.io/other", "HLD/svc/config/common.yaml", None),  # path globs are case-sensitive
    ("acr.azurecr.io/team-a", "z.yaml", 3),
    ("acr.azurecr.io/tram-a", "z.yaml", 3),
    ("acr.azurecr.io/team-x", "z.yaml", None),
    ("acr.azurecr.io/other", "ring-3/a.yaml", 4),                 # **/ matches zero directories
    ("acr.azurecr.io/other", "a/b/ring-3/a.yaml", 4),
    ("acr.azurecr.io/other", "a/b/ring-x/a.yaml", None),
])
def test_first_matching_rule_wins(image, path, index):
    assert load_policy(RULES).for_target(image, path).rule_index == index


def test_double_star_at_end_does_not_match_the_directory_itself():
    policy = load_policy('rules:\n  - path: "hld/**"\n    paused: true\n')
    assert policy.for_target("i", "hld/a/b/c.yaml").paused
    assert not policy.for_target("i", "hld").paused
    assert not policy.for_target("i", "hldx/a.yaml").paused


def test_glob_special_characters_are_literal():
    policy = load_policy('rules:\n  - path: "a+b/(x).yaml"\n    paused: true\n')
    assert policy.for_target("i", "a+b/(x).yaml").paused
    assert not policy.for_target("i", "aab/x.yaml").paused


# --- inheritance, pause and auto-approve -------------------------------------------------------------------------

def test_global_pause_cannot_be_undone_by_a_rule():
    policy = load_policy("paused: true\nrules:\n  - image: 'a/*'\n    paused: false\n")
    assert policy.paused
    assert policy.for_target("a/b", "x").paused
    assert policy.for_target("c/d", "x").paused


def test_alphabetical_with_named_group_extracts_and_semver_ignores_groups():
    policy = load_policy(textwrap.dedent("""\
        rules:
          - image: "a/*"
            ordering: alphabetical
            tagFilter: '^main-(?P<ts>\\d+)-'
          - image: "b/*"
            tagFilter: '^v(?P<v>.*)$'
          - image: "c/*"
            ordering: alphabetical
            tagFilter: '^main-'
        """))
    assert policy.for_target("a/x", "p").order == TagOrder(Ordering.ALPHABETICAL, r"^main-(?P<ts>\d+)-")
    assert policy.for_target("b/x", "p").order == TagOrder(Ordering.SEMVER)
    assert policy.for_target("c/x", "p").order == TagOrder(Ordering.ALPHABETICAL)


def test_numeric_without_filter_compares_whole_tag():
    target = load_policy("defaults:\n  ordering: numeric\n").for_target("i", "p")
    assert target.order == TagOrder(Ordering.NUMERIC) and target.tag_filter is None


def test_yaml_merge_keys_and_anchors_work():
    policy = load_policy(textwrap.dedent("""\
        rules:
          - &base
            image: "a/*"
            autoApprove: patch
            paused: &off false
          - <<: *base
            image: "b/*"
            paused: *off
        """))
    assert policy.for_target("b/x", "p").rule_index == 1
    assert policy.for_target("b/x", "p").auto_approve == "patch"


@pytest.mark.parametrize("allowed,change,expected", [
    ("none", "patch", False), ("patch", "patch", True), ("patch", "minor", False), ("minor", "patch", True),
    ("minor", "minor", True), ("minor", "major", False), ("major", "major", True), ("major", None, False),
])
def test_auto_approves(allowed, change, expected):
    assert auto_approves(allowed, change) is expected


# --- errors, each naming file and line ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,line,fragment", [
    ("environments: [prod]\nfoo: 1\n", 2, "unknown key 'foo' in the top level"),
    ("defaults:\n  ordering: semver\n  extract: x\n", 3, "unknown key 'extract' in defaults"),
    ("defaults:\n  autoApprove: patch\n", 2, "unknown key 'autoApprove' in defaults"),
    ("rules:\n  - image: a\n    tagfilter: x\n", 3, "unknown key 'tagfilter' in rules[0]"),
    ("paused: 'yes'\n", 1, "paused must be true or false, got string 'yes'"),
    ("paused: 1\n", 1, "paused must be true or false, got number 1"),
    ("environments: prod\n", 1, "environments must be a list of strings"),
    ("environments: []\n", 1, "environments must not be empty"),
    ("environments:\n  - prod\n  - 3\n", 3, "environments[1] must be a non-empty string, got number 3"),
    ("environments: [prod, prod]\n", 1, "lists 'prod' twice"),
    ("environments: ['my env']\n", 1, "'my env' is not a valid name"),
    ("helmMode: kustomize\n", 1, "helmMode 'kustomize' is not one of rendered, helmrelease"),
    ("mergeStrategy: merge\n", 1, "mergeStrategy 'merge' is not one of squash"),
    ("autoApprove: all\n", 1, "autoApprove 'all' is not one of none, patch, minor, major"),
    ("autoApprove: true\n", 1, "autoApprove must be a non-empty string, got boolean true"),
    ("allowedAuthors: [a, {b: c}]\n", 1, "allowedAuthors[1] must be a non-empty string, got a mapping"),
    ("defaults: [1]\n", 1, "defaults must be a mapping, got a list"),
    ("defaults:\n  ordering: newest\n", 2, "ordering 'newest' is not one of semver, numeric, alphabetical, pushed"),
    ("defaults:\n\n  tagFilter: '^(v'\n", 3, "tagFilter '^(v' is not a valid regex"),
    ("defaults:\n  range: '>>1'\n", 2, "range: invalid range '>>1'"),
    ('defaults:\n  tagFilter: "(\\n"\n', 2, "tagFilter '(\\n' is not a valid regex"),
    ("defaults:\n  range: ''\n", 2, "range must be a non-empty string"),
    ("defaults:\n  ordering: numeric\n  tagFilter: '^\\d+$'\n", 3, "numeric ordering needs a named group"),
    ("defaults:\n  ordering: pushed\n  range: '^1'\n", 3, "range '^1' needs semver ordering, not pushed"),
    ("rules: {image: a}\n", 1, "rules must be a list of mappings, got a mapping"),
    ("rules:\n  - a\n", 2, "rules[0] must be a mapping, got string 'a'"),
    ("rules:\n  - image: a\n  - autoApprove: patch\n", 3, "rules[1] needs 'image', 'path' or both"),
    ("rules:\n  - image: ''\n", 2, "rules[0].image must be a non-empty string"),
    ("rules:\n  - path: 'a/[z-a]'\n", 2, "rules[0].path: invalid glob"),
    ("rules:\n  - image: a\n\n    environments: [dev, dev]\n", 4, "rules[0].environments lists 'dev' twice"),
    ("rules:\n  - image: a\n    environments: []\n", 3, "rules[0].environments must not be empty"),
    ("rules:\n  - image: a\n    autoApprove: everything\n", 3, "rules[0].autoApprove 'everything'"),
    ("rules:\n  - image: a\n    paused: null\n", 3, "rules[0].paused must be true or false, got null"),
    ("rules:\n  - image: a\n    ordering: numeric\n    tagFilter: '^b-\\d+$'\n", 4,
     "rules[0]: numeric ordering needs a named group (?P<name>...) in tagFilter '^b-\\d+$'"),
    ("rules:\n  - image: a\n    ordering: numeric\n    range: '>=1.0.0'\n", 4,
     "rules[0]: range '>=1.0.0' needs semver ordering, not numeric"),
    ("- a\n- b\n", 1, "the top level must be a mapping, got a list"),
    ("just a string\n", 1, "the top level must be a mapping"),
    ("paused: true\npaused: false\n", 2, "invalid YAML"),
    ("rules:\n  - image: [a\n", 3, "invalid YAML"),
    ("a: b\n\tc: d\n", 2, "invalid YAML"),
])
def test_errors_name_the_file_and_line(text, line, fragment):
    message = error_for(text)
    assert message.startswith(f"autopilot.yaml:{line}: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_inherited_numeric_problem_points_at_the_rule_setting():
    text = textwrap.dedent("""\
        defaults:
          tagFilter: '^\\d+$'
        rules:
          - image: a
            ordering: numeric
        """)
    message = error_for(text)
    assert message.startswith("autopilot.yaml:5: rules[0]: numeric ordering needs a named group"), message


def test_error_names_the_given_source():
    with pytest.raises(PolicyError, match=r"^hld/autopilot\.yaml:1: unknown key 'x'"):
        load_policy("x: 1\n", source="hld/autopilot.yaml")


def test_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)


# --- properties --------------------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_gives_policy_or_policy_error(text):
    try:
        assert isinstance(load_policy(text), Policy)
    except PolicyError as exc:
        assert re.match(r"^autopilot\.yaml:\d+: ", str(exc))


yaml_text = st.text(alphabet=st.sampled_from(list("abc:-[]{}'\"!&*<>|#?,.\\^~ \t\n0123456789")), max_size=80)


@settings(max_examples=300, deadline=None)
@given(yaml_text)
def test_yaml_shaped_text_gives_policy_or_policy_error(text):
    try:
        assert isinstance(load_policy(text), Policy)
    except PolicyError as exc:
        assert re.match(r"^autopilot\.yaml:\d+: ", str(exc))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=16),
                    st.sampled_from(["semver", "numeric", "alphabetical", "pushed", "patch", "none", "squash",
                                     "prod", "a/*", "**", "^v(?P<n>\\d+)$", "(", ">=1.0.0", "^1.x", "[z-a]", ""]))
keys = st.sampled_from(["environments", "helmMode", "mergeStrategy", "paused", "autoApprove", "allowedAuthors",
                        "defaults", "rules", "image", "path", "ordering", "tagFilter", "range", "bogus"])
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, documents, max_size=5))
def test_structured_documents_give_policy_or_policy_error(document):
    stream = io.StringIO()
    YAML(typ="safe").dump(document, stream)
    try:
        assert isinstance(load_policy(stream.getvalue()), Policy)
    except PolicyError as exc:
        assert re.match(r"^autopilot\.yaml:\d+: ", str(exc))
