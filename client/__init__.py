"""memoryd.client: talk to a running memoryd over its Unix socket.

    from memoryd.client import Client

    with Client() as memory:
        result = memory.put("the user prefers tea", kind="fact", tags=["prefs"])
        frame = memory.get(result.id)

``AsyncClient`` has the same methods as coroutines.  The wire protocol is
specified in PROTOCOL.md beside this file.  This package never imports the
daemon, storage or crypto packages.
"""

from .async_client import AsyncClient
from .errors import (
    ClientTimeoutError,
    DaemonConnectionError,
    MemorydError,
    NotFoundError,
    ProtocolViolationError,
    RequestError,
    UnavailableError,
)
from .models import (
    DeleteResult,
    Frame,
    Page,
    PutResult,
    RankedPage,
    SearchHit,
    SearchResult,
    ServerInfo,
)
from .paths import default_socket_path
from .protocol import LIMITS, PROTOCOL_VERSION
from .sync_client import Client

__all__ = [
    "LIMITS",
    "PROTOCOL_VERSION",
    "AsyncClient",
    "Client",
    "ClientTimeoutError",
    "DaemonConnectionError",
    "DeleteResult",
    "Frame",
    "MemorydError",
    "NotFoundError",
    "Page",
    "ProtocolViolationError",
    "PutResult",
    "RankedPage",
    "RequestError",
    "SearchHit",
    "SearchResult",
    "ServerInfo",
    "UnavailableError",
    "default_socket_path",
]
