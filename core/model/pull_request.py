"""What the Azure DevOps gateway reads of a pull request, as plain data the reviewer's rules judge."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChangedFile", "PolicyEvaluation", "PullRequest", "Reviewer", "Thread"]


@dataclass(frozen=True)
class Reviewer:
    id: str
    vote: int


@dataclass(frozen=True)
class PullRequest:
    id: int
    repository_id: str
    project_id: str | None
    title: str
    description: str
    source_ref: str
    target_ref: str
    status: str
    is_draft: bool
    created_by_id: str
    created_by_name: str
    auto_complete_set_by_id: str | None
    last_merge_source_commit: str | None
    last_merge_target_commit: str | None
    last_merge_commit: str | None
    reviewers: tuple[Reviewer, ...]


@dataclass(frozen=True)
class ChangedFile:
    path: str
    change_type: str


@dataclass(frozen=True)
class PolicyEvaluation:
    id: str
    status: str
    is_blocking: bool
    is_enabled: bool
    type_id: str
    type_name: str


@dataclass(frozen=True)
class Thread:
    id: int
    status: str
    first_comment: str
