"""Server-side TLS for the devserver's HTTP listener, on the socket itself.

`trio.SSLStream` pumps every record through a memory BIO in Python (locks, conflict
detectors, several calls per send and receive); on the benchmark machine that cost ~40% more
devserver CPU per request than plain HTTP, which a benchmark of the bridge over HTTPS would
partly measure. Here OpenSSL reads and writes the non-blocking socket directly
(`ssl.SSLSocket`), and trio only waits for readiness: the TLS overhead per request is the
cipher work. Semantics are trio's `SSLStream(https_compatible=True)`: no close_notify sent
on close, a peer's missing close_notify is a plain EOF, failures are `trio.BrokenResourceError`
with the ssl/OS error as cause.
"""

from __future__ import annotations

import errno
import socket
import ssl

import trio

#: Largest chunk `receive_some()` asks OpenSSL for without a size (a TLS record is <= 16 KiB).
DEFAULT_RECEIVE_BYTES = 64 * 1024


class TlsSocketStream(trio.abc.Stream):
    """One accepted TLS connection; the handshake is run by `do_handshake()` (or lazily)."""

    def __init__(self, sock: ssl.SSLSocket, peer: str) -> None:
        self._sock = sock
        #: "host:port" of the client, for log lines.
        self.peer = peer
        self._closed = False

    async def _wait(self, want: ssl.SSLError) -> None:
        if isinstance(want, ssl.SSLWantWriteError):
            await trio.lowlevel.wait_writable(self._sock)
            return
        try:
            await trio.lowlevel.wait_readable(self._sock)
        except trio.BusyResourceError:
            # A write needs the peer's bytes while the reader task waits for them: that
            # reader's OpenSSL call will consume them; try again shortly.
            await trio.sleep(0.001)

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this TLS connection was closed")

    async def do_handshake(self) -> None:
        self._check_open()
        while True:
            try:
                self._sock.do_handshake()
                break
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as want:
                await self._wait(want)
            except (OSError, ValueError) as exc:
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = self._sock.recv(max_bytes or DEFAULT_RECEIVE_BYTES)
                break
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as want:
                waited = True
                await self._wait(want)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""  # close_notify, or a peer that just closed (https_compatible)
                break
            except OSError as exc:
                if self._closed:
                    raise trio.ClosedResourceError("this TLS connection was closed") from None
                raise trio.BrokenResourceError(f"TLS receive failed: {exc}") from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        waited = False
        while view:
            try:
                sent = self._sock.send(view)
                view = view[sent:]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as want:
                waited = True
                await self._wait(want)
            except OSError as exc:
                if self._closed:
                    raise trio.ClosedResourceError("this TLS connection was closed") from None
                raise trio.BrokenResourceError(f"TLS send failed: {exc}") from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await trio.lowlevel.wait_writable(self._sock)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
        await trio.lowlevel.checkpoint()


class TlsSocketListener(trio.abc.Listener[TlsSocketStream]):
    """Accepts TCP connections of `listener` and wraps them in TLS (server side)."""

    def __init__(self, listener: trio.SocketListener, context: ssl.SSLContext) -> None:
        self.transport_listener = listener
        self._context = context

    async def accept(self) -> TlsSocketStream:
        while True:
            stream = await self.transport_listener.accept()
            try:
                host, port = stream.socket.getpeername()[:2]
                peer = f"{host}:{port}"
            except OSError:  # already gone (reset before we looked)
                await stream.aclose()
                continue
            raw = socket.socket(fileno=stream.socket.detach())
            raw.setblocking(False)
            try:
                tls = self._context.wrap_socket(
                    raw, server_side=True, do_handshake_on_connect=False
                )
            except OSError as exc:
                raw.close()
                if exc.errno in (errno.ENOTCONN, errno.ECONNRESET):
                    continue
                raise
            return TlsSocketStream(tls, peer)

    async def aclose(self) -> None:
        await self.transport_listener.aclose()
