"""Which services a work item's tenant gets: its own view (repos, credentials, working copies), never another's."""
from __future__ import annotations

from typing import Any

from core.model.fleet import DEFAULT_TENANT, UnknownTenant


def services_for(services: Any, tenant: str) -> Any:
    """`services.for_work(tenant)`: UnknownTenant for a tenant the fleet does not define, TenantPaused (poisons the
    item, replayable after resuming) for a paused one. Test doubles without a fleet serve tenant `default` only."""
    for_work = getattr(services, "for_work", None)
    if for_work is not None:
        return for_work(tenant)
    if tenant != DEFAULT_TENANT:
        raise UnknownTenant(f"no tenant named {tenant!r}: these services serve {DEFAULT_TENANT!r} only")
    return services
