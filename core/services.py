"""Dependencies wired once per process: settings, storage, and the services built on them."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from core.deliveries import DeliveryLog
from core.intake import Intake
from core.settings import Settings, get_settings
from core.storage import Storage


@dataclass
class Services:
    settings: Settings

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.settings.storage_connection)

    @cached_property
    def deliveries(self) -> DeliveryLog:
        return DeliveryLog(self.storage)

    @cached_property
    def intake(self) -> Intake:
        return Intake(self.settings, self.storage, self.deliveries)


@lru_cache(maxsize=1)
def get_services() -> Services:
    return Services(get_settings())


def reset_services() -> None:
    """Forget the wired services (tests change the environment between cases)."""
    get_settings.cache_clear()
    get_services.cache_clear()
