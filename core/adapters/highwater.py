"""Persisted high-water marks: the newest tag ever applied per (repository, target), so a delayed, replayed or
out-of-order delivery can never move a target backwards even after the repo value changed by hand or a PR closed."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from azure.core.exceptions import AzureError, ResourceNotFoundError

from core.adapters.etag import update_with_etag
from core.adapters.storage import Storage, StorageUnavailable

HIGHWATER_TABLE = "autopilotHighWater"


@dataclass(frozen=True)
class HighWaterMark:
    tag: str
    pushed_at: str   # ACR timestamp of the push that set it ("" when unknown)


def _keys(repo_url: str, target_key: str) -> tuple[str, str]:
    return (hashlib.sha256(repo_url.encode()).hexdigest()[:32],
            hashlib.sha256(target_key.encode()).hexdigest())


class HighWaterStore(Protocol):
    def get(self, repo_url: str, target_key: str) -> HighWaterMark | None:
        """The mark of (repository, target), None when none was set."""

    def raise_to(self, repo_url: str, target_key: str, mark: HighWaterMark,
                 is_newer: Callable[[HighWaterMark, HighWaterMark], bool]) -> bool:
        """Set the mark when there is none or `is_newer(mark, stored)`; True when it was set. Atomic: of two
        concurrent raises the newer mark stays."""


class HighWaterMarks:
    """High-water marks in Table storage (compare-and-swap on the row's ETag)."""

    def __init__(self, storage: Storage):
        self._storage = storage

    def get(self, repo_url: str, target_key: str) -> HighWaterMark | None:
        pk, rk = _keys(repo_url, target_key)
        try:
            entity = self._storage.table(HIGHWATER_TABLE).get_entity(pk, rk)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageUnavailable(f"high-water table: {type(exc).__name__}") from exc
        return HighWaterMark(entity["tag"], entity.get("pushedAt", ""))

    def raise_to(self, repo_url: str, target_key: str, mark: HighWaterMark,
                 is_newer: Callable[[HighWaterMark, HighWaterMark], bool]) -> bool:
        pk, rk = _keys(repo_url, target_key)

        def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is not None and not is_newer(mark, HighWaterMark(current["tag"], current.get("pushedAt", ""))):
                return None
            return {"tag": mark.tag, "pushedAt": mark.pushed_at, "targetKey": target_key, "repo": repo_url,
                    "updatedAt": datetime.now(timezone.utc).isoformat()}

        return update_with_etag(self._storage.table(HIGHWATER_TABLE), pk, rk, change, "high-water table")
