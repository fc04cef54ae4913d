"""approval: manual: the reviewer refuses a bump PR into such a stage, whatever else holds."""
from __future__ import annotations

from core.rules.policy import load_policy
from core.rules.review_rules import bump_diff_rule
from tests.test_review_rules import BASE, FRONTEND_DEV, tag, versions

MANUAL_DEV = load_policy("autoApprove: major\npromotion:\n  - env: qa\n  - env: dev\n    approval: manual\n")
AUTO_DEV = load_policy("autoApprove: major\npromotion:\n  - env: qa\n  - env: dev\n")


def test_a_promotion_into_a_manual_stage_is_never_auto_approved(tmp_path):
    result = bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.4.1"))], MANUAL_DEV)
    assert not result.passed
    assert result.reason == f"{FRONTEND_DEV}: dev is a promotion stage with approval: manual"
    assert bump_diff_rule([versions(tmp_path, FRONTEND_DEV, BASE, tag(BASE, "1.4.1"))], AUTO_DEV).passed
