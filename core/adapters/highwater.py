"""Persisted high-water marks: the newest tag ever applied per (repository, target), so a delayed, replayed or
out-of-order delivery can never move a target backwards even after the repo value changed by hand or a PR closed."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from core.adapters.storage import Storage, StorageUnavailable

HIGHWATER_TABLE = "autopilotHighWater"


@dataclass(frozen=True)
class HighWaterMark:
    tag: str
    pushed_at: str   # ACR timestamp of the push that set it ("" when unknown)


def _keys(repo_url: str, target_key: str) -> tuple[str, str]:
    return (hashlib.sha256(repo_url.encode()).hexdigest()[:32],
            hashlib.sha256(target_key.encode()).hexdigest())


class HighWaterMarks:
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
        """Set the mark when `mark` is newer than the stored one (compare-and-swap on the entity's etag)."""
        pk, rk = _keys(repo_url, target_key)
        table = self._storage.table(HIGHWATER_TABLE)
        entity = {"PartitionKey": pk, "RowKey": rk, "tag": mark.tag, "pushedAt": mark.pushed_at,
                  "targetKey": target_key, "repo": repo_url, "updatedAt": datetime.now(timezone.utc).isoformat()}
        for _ in range(10):
            try:
                current = table.get_entity(pk, rk)
            except ResourceNotFoundError:
                try:
                    table.create_entity(entity)
                    return True
                except ResourceExistsError:
                    continue
            except AzureError as exc:
                raise StorageUnavailable(f"high-water table: {type(exc).__name__}") from exc
            if not is_newer(mark, HighWaterMark(current["tag"], current.get("pushedAt", ""))):
                return False
            try:
                table.update_entity(entity, mode="replace", etag=current.metadata["etag"],
                                    match_condition=MatchConditions.IfNotModified)
                return True
            except ResourceModifiedError:
                continue
            except AzureError as exc:
                raise StorageUnavailable(f"high-water table: {type(exc).__name__}") from exc
        raise StorageUnavailable("high-water table: too much contention")
