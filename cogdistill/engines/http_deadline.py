"""A deadline for a whole HTTP request, on top of httpx's per-operation timeouts.

httpx's timeout bounds each socket operation, so a server sending one byte every few seconds
never trips it. The client's network backend is wrapped so that every connect, read and
write is also bounded by the time left to the request running in this thread (httpx's sync
client does all of a request's I/O in the calling thread): at the deadline the operation
fails as an httpx timeout, whether the server trickles its headers or its body.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

current = threading.local()  # .at: time.monotonic() by which this thread's request must end (None: no limit)


def _bounded(timeout: Optional[float], expired) -> Optional[float]:
    """timeout, shortened to the time left before this thread's deadline; `expired` raised past it."""
    end = getattr(current, "at", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


def _deadline_backend(httpcore, inner):
    """A network backend like `inner` whose streams respect this thread's request deadline."""

    class Stream(httpcore.NetworkStream):
        def __init__(self, stream):
            self._stream = stream

        def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
            return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
            step = 64 * 1024  # the inner write loops over partial sends with one timeout: bound each piece
            for start in range(0, len(buffer), step):
                self._stream.write(buffer[start:start + step], _bounded(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context, server_hostname=None, timeout=None):
            return Stream(self._stream.start_tls(ssl_context, server_hostname,
                                                 _bounded(timeout, httpcore.ConnectTimeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            return Stream(inner.connect_tcp(host, port, _bounded(timeout, httpcore.ConnectTimeout),
                                            local_address, socket_options))

        def connect_unix_socket(self, path, timeout=None, socket_options=None):
            return Stream(inner.connect_unix_socket(path, _bounded(timeout, httpcore.ConnectTimeout),
                                                    socket_options))

        def sleep(self, seconds: float) -> None:
            inner.sleep(seconds)

    return Backend()


def install(client) -> bool:
    """Wrap the network backend of every connection pool the client may use (its own, and those
    of proxies taken from the environment). httpx has no public hook for this, hence the private
    attributes; False (the caller should then check the deadline between body chunks) if they ever change."""
    import httpcore

    installed = False
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None:
            pool._network_backend = _deadline_backend(httpcore, backend)
            installed = True
    return installed
