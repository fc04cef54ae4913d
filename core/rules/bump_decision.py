"""The forward-only decision: should a pushed tag replace the tag a target currently has?

Checks, first failing one wins: paused → skip; environment not allowed → skip; tag filter (``re.search``) does not
match → skip; tag unorderable under the ordering → skip; outside the semver range → skip; same as the current tag
(equal under the ordering, so ``v1.2.3`` equals ``1.2.3``) → noop; older than the current tag → skip, never
downgrade; not newer than the high-water mark (the newest tag ever applied to this target, persisted outside git) →
skip, because a replayed or out-of-order delivery, or a human rollback in the HLD, must not be overridden; else bump.
A current tag or high-water mark that is unorderable under the target's ordering (``latest``, a tag recorded under an
earlier ordering, or a ``pushed`` ordering without its timestamp) is no reference point and does not block a bump.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from core.rules.policy import TargetPolicy
from core.rules.tag_order import in_range, quoted, sort_key


@dataclass(frozen=True)
class BumpDecision:
    action: str
    reason: str
    new_tag: str | None = None


def _rejection(tag: str, pushed: datetime | None, policy: TargetPolicy) -> str | None:
    """Why ``tag`` can never be applied under ``policy`` (independent of what is deployed), or None."""
    if policy.tag_filter is not None and policy.tag_filter.search(tag) is None:
        return f"tag {tag!r} filtered out by tagFilter {quoted(policy.tag_filter.pattern)}"
    if sort_key(tag, policy.order, pushed) is None:
        return f"tag {tag!r} is not orderable under {policy.order.ordering.value} ordering"
    if policy.range is not None and not in_range(tag, policy.range):
        return f"tag {tag!r} is outside range {policy.range!r}"
    return None


def decide_bump(candidate_tag: str, current_tag: str | None, high_water: str | None, policy: TargetPolicy,
                target_env: str, candidate_pushed: datetime | None = None, current_pushed: datetime | None = None,
                high_water_pushed: datetime | None = None) -> BumpDecision:
    if policy.paused:
        where = "autopilot.yaml" if policy.rule_index is None else f"autopilot.yaml rules[{policy.rule_index}]"
        return BumpDecision("skip", f"automation is paused by {where}")
    if policy.environments is not None and target_env not in policy.environments:
        allowed = ", ".join(sorted(policy.environments))
        return BumpDecision("skip", f"environment {target_env!r} is not among the allowed environments [{allowed}]")
    rejection = _rejection(candidate_tag, candidate_pushed, policy)
    if rejection is not None:
        return BumpDecision("skip", rejection)
    candidate_key = sort_key(candidate_tag, policy.order, candidate_pushed)
    current_key = None if current_tag is None else sort_key(current_tag, policy.order, current_pushed)
    if current_key is not None:
        if candidate_key == current_key:
            same = "" if candidate_tag == current_tag else f" (as {current_tag})"
            return BumpDecision("noop", f"{candidate_tag} is already current{same}")
        if candidate_key < current_key:
            return BumpDecision("skip", f"{candidate_tag} is older than current {current_tag}; never downgrade")
    high_water_key = None if high_water is None else sort_key(high_water, policy.order, high_water_pushed)
    if high_water_key is not None and candidate_key <= high_water_key:
        return BumpDecision("skip", f"{candidate_tag} is not newer than high-water mark {high_water} "
                                    f"(replayed or out-of-order delivery, or a rollback in the HLD)")
    if current_tag is None:
        return BumpDecision("bump", f"no current tag; applying {candidate_tag}", candidate_tag)
    if current_key is None:
        return BumpDecision("bump", f"current tag {current_tag} is not orderable under "
                                    f"{policy.order.ordering.value} ordering; applying {candidate_tag}", candidate_tag)
    return BumpDecision("bump", f"{candidate_tag} is newer than current {current_tag}", candidate_tag)


def newest(tags: Iterable[tuple[str, datetime | None]], policy: TargetPolicy) -> str | None:
    """The newest tag of a batch that passes the filter, ordering and range; ties go to the greater string."""
    best: tuple[tuple, str] | None = None
    for tag, pushed in tags:
        if _rejection(tag, pushed, policy) is not None:
            continue
        key = (sort_key(tag, policy.order, pushed), tag)
        if best is None or key > best:
            best = key
    return None if best is None else best[1]
