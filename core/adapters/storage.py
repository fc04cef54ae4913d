"""Azure Storage adapter: the work queues and the tables, on Azurite locally and the Function App's account in Azure."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import (
    LinearRetry,
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from core.errors import Retryable

from core.model.queues import (CLUSTER_EVENTS, FLUX_NOTIFY, HLD_CHANGED, IMAGE_PUSHED, POISON_SUFFIX,  # noqa: F401
                               PR_REVIEW, WORK_QUEUES)

# Azurite's well-known development account (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# Intake must answer ACR within 5 s: fail fast rather than retry storage for minutes. The queue SDK ignores
# retry_backoff_factor (its default ExponentialRetry waits 15 s, then 45 s), so queues get their own policy.
_CLIENT_OPTIONS = {"retry_total": 2, "retry_backoff_factor": 0.2, "connection_timeout": 3, "read_timeout": 10}
# The aio clients serve the webhooks (ACR gives up after 5 s): a stalled response is retried once, soon.
_AIO_OPTIONS = {"retry_total": 1, "retry_backoff_factor": 0.2, "connection_timeout": 3, "read_timeout": 4}


def _queue_options(transport: RequestsTransport) -> dict:
    return {**_CLIENT_OPTIONS, "transport": transport,
            "retry_policy": LinearRetry(backoff=0.2, random_jitter_range=0, retry_total=2)}


class StorageUnavailable(Retryable):
    """Storage could not be reached or answered with a server error."""


@dataclass(frozen=True)
class Received:
    """A queue message as read: its id and text, the dequeue count after this read, and the pop receipt that
    deletes or releases it (empty for a peek)."""
    id: str
    text: str
    dequeue_count: int = 0
    pop_receipt: str = ""


class WorkQueues(Protocol):
    """The work queues as the services use them; `Storage` is the Azure Storage implementation. Every method
    raises StorageUnavailable when the queue service cannot be reached."""

    def enqueue(self, queue: str, text: str, visibility_timeout: int | None = None) -> str:
        """Send `text` (visible after `visibility_timeout` seconds); the message id."""
        ...

    def queue_depth(self, name: str) -> int:
        """Messages on the queue, hidden ones included (Storage lets an AzureError through here: health and the
        dashboard name it)."""
        ...

    def peek(self, queue: str, limit: int = 32) -> list[Received]:
        """Up to `limit` (at most 32) visible messages, oldest first, without hiding them."""
        ...

    def receive(self, queue: str, limit: int, visibility_timeout: int) -> list[Received]:
        """Up to `limit` (at most 32) visible messages, hidden for `visibility_timeout` s, dequeue count raised."""
        ...

    def delete(self, queue: str, message: Received) -> bool:
        """Delete a received message; False when it was already gone (or its pop receipt is stale)."""
        ...

    def release(self, queue: str, message: Received, visibility_timeout: int) -> None:
        """Make a received message visible again after `visibility_timeout` seconds."""
        ...


class AsyncWorkQueues(Protocol):
    """The coroutine side (intake's sends beyond the output bindings); `AsyncStorage` implements it."""

    async def enqueue(self, queue: str, text: str) -> str:
        ...


def dev_connection_string(host: str = "127.0.0.1", blob_port: int = 10000, queue_port: int = 10001,
                          table_port: int = 10002) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue_port}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{DEV_ACCOUNT};"
    )


def normalize_connection_string(value: str) -> str:
    if value.strip().lower().replace(" ", "") == "usedevelopmentstorage=true":
        return dev_connection_string()
    return value


def poison_queue(name: str) -> str:
    return name + POISON_SUFFIX


@dataclass(frozen=True)
class StorageIdentity:
    """An account reached with an Entra identity instead of a key (AzureWebJobsStorage__accountName etc.)."""
    queue_url: str
    table_url: str
    credential: Any


class Storage:
    """Queue and table clients for one storage account, created once per process and reused."""

    def __init__(self, connection_string: str = "", identity: StorageIdentity | None = None):
        if bool(connection_string) == bool(identity):
            raise ValueError("Storage needs a connection string or an identity, not both")
        self._conn = normalize_connection_string(connection_string)
        self._identity = identity
        # One connection pool for every client; no proxy/netrc lookups from the environment on each request
        # (they cost more CPU than the request itself on the intake path).
        self._transport = RequestsTransport(use_env_settings=False)
        if identity is None:
            self._queues = QueueServiceClient.from_connection_string(self._conn, **_queue_options(self._transport))
            self._tables = TableServiceClient.from_connection_string(self._conn, transport=self._transport,
                                                                     **_CLIENT_OPTIONS)
        else:
            self._queues = QueueServiceClient(identity.queue_url, credential=identity.credential,
                                              **_queue_options(self._transport))
            self._tables = TableServiceClient(identity.table_url, credential=identity.credential,
                                              transport=self._transport, **_CLIENT_OPTIONS)
        self._queue_clients: dict[str, QueueClient] = {}
        self._table_clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @property
    def connection_string(self) -> str:
        return self._conn

    @property
    def service_clients(self) -> tuple[QueueServiceClient, TableServiceClient]:
        return self._queues, self._tables

    def queue(self, name: str) -> QueueClient:
        with self._lock:
            client = self._queue_clients.get(name)
            if client is None:
                codecs = {"message_encode_policy": TextBase64EncodePolicy(),
                          "message_decode_policy": TextBase64DecodePolicy(), **_queue_options(self._transport)}
                client = (QueueClient.from_connection_string(self._conn, name, **codecs) if self._identity is None
                          else QueueClient(self._identity.queue_url, name, credential=self._identity.credential,
                                           **codecs))
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass
                except AzureError as exc:
                    raise StorageUnavailable(f"queue {name}: {type(exc).__name__}") from exc
                self._queue_clients[name] = client
            return client

    def table(self, name: str) -> TableClient:
        with self._lock:
            client = self._table_clients.get(name)
            if client is None:
                try:
                    self._tables.create_table_if_not_exists(name)
                except AzureError as exc:
                    raise StorageUnavailable(f"table {name}: {type(exc).__name__}") from exc
                client = self._tables.get_table_client(name)
                self._table_clients[name] = client
            return client

    def enqueue(self, queue: str, text: str, visibility_timeout: int | None = None) -> str:
        try:
            sent = self.queue(queue).send_message(text, visibility_timeout=visibility_timeout)
        except AzureError as exc:
            raise StorageUnavailable(f"queue {queue}: {type(exc).__name__}") from exc
        return sent.id

    def queue_depth(self, name: str) -> int:
        return self.queue(name).get_queue_properties().approximate_message_count

    def peek(self, queue: str, limit: int = 32) -> list[Received]:
        try:
            found = self.queue(queue).peek_messages(max_messages=min(limit, 32))
        except AzureError as exc:
            raise StorageUnavailable(f"queue {queue}: {type(exc).__name__}") from exc
        return [Received(m.id, m.content or "", int(m.dequeue_count or 0)) for m in found]

    def receive(self, queue: str, limit: int, visibility_timeout: int) -> list[Received]:
        try:
            found = list(self.queue(queue).receive_messages(messages_per_page=min(limit, 32),
                                                           max_messages=min(limit, 32),
                                                           visibility_timeout=visibility_timeout))
        except AzureError as exc:
            raise StorageUnavailable(f"queue {queue}: {type(exc).__name__}") from exc
        return [Received(m.id, m.content or "", int(m.dequeue_count or 1), m.pop_receipt) for m in found]

    def delete(self, queue: str, message: Received) -> bool:
        try:
            self.queue(queue).delete_message(message.id, message.pop_receipt)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise StorageUnavailable(f"queue {queue}: {type(exc).__name__}") from exc
        return True

    def release(self, queue: str, message: Received, visibility_timeout: int) -> None:
        try:
            self.queue(queue).update_message(message.id, message.pop_receipt, visibility_timeout=visibility_timeout)
        except AzureError as exc:
            raise StorageUnavailable(f"queue {queue}: {type(exc).__name__}") from exc

    def ensure(self, queues: Iterable[str] = WORK_QUEUES) -> None:
        """Create the work queues and their poison queues (idempotent)."""
        for name in queues:
            self.queue(name)
            self.queue(poison_queue(name))


class AsyncStorage:
    """The aio twins of `Storage`'s queue and table clients, for coroutine functions (the HTTP front doors and
    the outbox timer), on aiohttp. Bound to the event loop it is first used on: the Python worker runs every
    coroutine function on its one loop, so there is one per process (`Services.async_storage`)."""

    def __init__(self, connection_string: str = "", identity: StorageIdentity | None = None):
        if bool(connection_string) == bool(identity):
            raise ValueError("AsyncStorage needs a connection string or an identity, not both")
        from azure.core.pipeline.transport import AioHttpTransport
        from azure.data.tables.aio import TableServiceClient as AioTableServiceClient

        self._conn = normalize_connection_string(connection_string)
        self._identity = identity
        self._transport = AioHttpTransport(use_env_settings=False)
        if identity is None:
            self._tables = AioTableServiceClient.from_connection_string(self._conn, transport=self._transport,
                                                                        **_AIO_OPTIONS)
        else:
            self._tables = AioTableServiceClient(identity.table_url, credential=identity.credential,
                                                 transport=self._transport, **_AIO_OPTIONS)
        self._table_clients: dict[str, Any] = {}
        self._queue_clients: dict[str, Any] = {}

    async def table(self, name: str):
        client = self._table_clients.get(name)
        if client is None:
            try:
                await self._tables.create_table_if_not_exists(name)
            except AzureError as exc:
                raise StorageUnavailable(f"table {name}: {type(exc).__name__}") from exc
            client = self._table_clients.setdefault(name, self._tables.get_table_client(name))
        return client

    async def queue(self, name: str):
        from azure.storage.queue.aio import QueueClient as AioQueueClient

        client = self._queue_clients.get(name)
        if client is None:
            # The aio queue client builds its async ExponentialRetry from these keywords (the sync LinearRetry
            # policy cannot run in an async pipeline): 0.2 s between two retries, as for the sync clients.
            codecs = {"message_encode_policy": TextBase64EncodePolicy(),
                      "message_decode_policy": TextBase64DecodePolicy(), **_AIO_OPTIONS,
                      "transport": self._transport, "initial_backoff": 0.2, "increment_base": 0,
                      "random_jitter_range": 0}
            client = (AioQueueClient.from_connection_string(self._conn, name, **codecs) if self._identity is None
                      else AioQueueClient(self._identity.queue_url, name, credential=self._identity.credential,
                                          **codecs))
            try:
                await client.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise StorageUnavailable(f"queue {name}: {type(exc).__name__}") from exc
            client = self._queue_clients.setdefault(name, client)
        return client

    async def enqueue(self, queue: str, text: str) -> str:
        client = await self.queue(queue)
        try:
            sent = await client.send_message(text)
        except AzureError as exc:
            raise StorageUnavailable(f"queue {queue}: {type(exc).__name__}") from exc
        return sent.id

    async def close(self) -> None:
        """Close the shared aiohttp session (every client here uses the one transport)."""
        await self._transport.close()
