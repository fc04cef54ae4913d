"""The fleet: the tenants one deployment serves, each with its own HLD and manifest repos, Azure DevOps project,
credentials (by reference only) and image filter. Without a fleet.yaml the app settings define one tenant, `default`."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fnmatch import fnmatchcase

from core.errors import Permanent

DEFAULT_TENANT = "default"


class UnknownTenant(Permanent, LookupError):
    """A work item names a tenant the fleet does not define (removed from fleet.yaml, or a forged message)."""


class ForeignRepository(Permanent, PermissionError):
    """A tenant's work would touch a repository that tenant's definition does not name."""


class TenantPaused(Permanent):
    """A paused tenant's queued work: poisoned with this reason, replayed from the poison queue after resuming."""


def _same_repo(a: str, b: str) -> bool:
    return a.rstrip("/").removesuffix(".git").lower() == b.rstrip("/").removesuffix(".git").lower()


@dataclass(frozen=True)
class RepoRef:
    url: str
    branch: str = "main"


@dataclass(frozen=True)
class FluxCluster:
    name: str
    env: str = ""                        # comma-separated environments it serves; "" = every one


@dataclass(frozen=True)
class FluxReceiverRef:
    """A Flux notification-controller Receiver to wake after a manifest commit; its token is the app setting
    `secret_setting` names (core.adapters.flux_receivers resolves it), never written here."""
    cluster: str
    env: str                             # the environment folder of the manifest repo it serves
    url: str                             # https://<notification-controller>/hook/<status.webhookPath digest>
    secret_setting: str


@dataclass(frozen=True)
class Tenant:
    name: str
    manifests: RepoRef
    hld: RepoRef | None = None           # None: the light-weight flow, images bumped straight in the manifests
    write_mode: str = "direct"           # direct | pull-request
    azdo_org_url: str = ""
    azdo_project: str = ""
    images: tuple[str, ...] = ("*",)     # globs on `host/repository` (no tag)
    pat_setting: str = ""                # the NAME of the app setting holding this tenant's PAT; "" = managed identity
    paused: bool = False
    pat_expires: date | None = None      # when that PAT expires (fleet.yaml `expires`); health flags it 14 days ahead
    flux_secret_setting: str = ""        # the NAME of the app setting holding the HMAC key of its Flux events hook
    flux_clusters: tuple["FluxCluster", ...] = ()   # its clusters, for `setup`'s Provider/Alert YAML
    flux_receivers: tuple[FluxReceiverRef, ...] = ()  # its Receivers, woken after its manifest commits (only its)

    @property
    def bump_repo(self) -> RepoRef:
        return self.hld or self.manifests

    @property
    def repos(self) -> tuple[RepoRef, ...]:
        return (self.hld, self.manifests) if self.hld else (self.manifests,)

    def owns_repo(self, url: str) -> bool:
        return any(_same_repo(url, r.url) for r in self.repos)

    def require_repo(self, url: str) -> None:
        if not self.owns_repo(url):
            raise ForeignRepository(f"tenant {self.name!r} does not own repository {url}")

    def takes_image(self, image: str) -> bool:
        """`image` is `host/repository` without tag or digest."""
        return any(fnmatchcase(image, pattern) for pattern in self.images)


@dataclass(frozen=True)
class Fleet:
    tenants: tuple[Tenant, ...]
    source: str = "app settings"         # where it came from: "app settings" or "<fleet repo url>@<commit>"

    def tenant(self, name: str) -> Tenant:
        for t in self.tenants:
            if t.name == name:
                return t
        raise UnknownTenant(f"no tenant named {name!r} in the fleet ({self.source})")

    def for_image(self, image: str) -> list[Tenant]:
        """The tenants an accepted push fans out to. A paused tenant takes nothing new (like Flux's `suspend: true`);
        the delivery stays in the journal, so a replay after resuming brings it."""
        return [t for t in self.tenants if t.takes_image(image) and not t.paused]

    def owner_of_repo(self, url: str) -> Tenant | None:
        for t in self.tenants:
            if t.owns_repo(url):
                return t
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tenants)
