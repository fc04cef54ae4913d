"""One optimistic read-modify-write on a Table storage row: read it with its ETag, compute the new row, write it
only if nobody changed it meanwhile (else read again). Used by every store whose rows several workers update."""
from __future__ import annotations

from typing import Any, Callable

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient

from core.adapters.storage import StorageUnavailable

ATTEMPTS = 10


def update_with_etag(table: TableClient, pk: str, rk: str,
                     change: Callable[[dict[str, Any] | None], dict[str, Any] | None], what: str) -> bool:
    """`change(current or None)` returns the whole new row (without keys), or None to leave the row as it is.
    True when a row was written; StorageUnavailable after `ATTEMPTS` lost races or on a storage error."""
    for _ in range(ATTEMPTS):
        try:
            try:
                entity = table.get_entity(pk, rk)
            except ResourceNotFoundError:
                entity = None
            current = None if entity is None else {k: v for k, v in entity.items()
                                                   if k not in ("PartitionKey", "RowKey")}
            row = change(current)
            if row is None:
                return False
            row = {**row, "PartitionKey": pk, "RowKey": rk}
            if entity is None:
                table.create_entity(row)
            else:
                table.update_entity(row, mode="replace", etag=entity.metadata["etag"],
                                    match_condition=MatchConditions.IfNotModified)
            return True
        except (ResourceExistsError, ResourceModifiedError):
            continue
        except AzureError as exc:
            raise StorageUnavailable(f"{what}: {type(exc).__name__}") from exc
    raise StorageUnavailable(f"{what}: too much contention")
