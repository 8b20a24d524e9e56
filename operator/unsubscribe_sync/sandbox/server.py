"""Running the sandbox: in a background thread with its own event loop (tests), or in the foreground (CLI)."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from types import TracebackType

from aiohttp import web

from .app import build_app
from .credentials import SandboxCredentials, generate_credentials
from .state import SandboxState
from .tls import TlsFiles, ensure_tls_files


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


class SandboxServer:
    """The sandbox over HTTPS on host:port (port 0 = a free one), in a daemon thread with its own loop.

    `url` is both the login URL and the instance URL. The state's connected app is registered from
    `credentials` (generated when not given).
    """

    def __init__(
        self,
        tls_dir: Path,
        state: SandboxState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: SandboxCredentials | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.state = state or SandboxState()
        self.credentials = credentials or generate_credentials()
        self.state.register_app(
            self.credentials.client_id,
            client_secret=self.credentials.client_secret,
            public_key_pem=self.credentials.jwt_public_key_pem,
            usernames=[self.credentials.jwt_username],
        )
        self.tls: TlsFiles = ensure_tls_files(tls_dir)
        self.admin_token = admin_token
        self.host = host
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"{self.url}/__sandbox"

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file

    async def start_async(self) -> None:
        """Start serving on the running loop (for use inside an asyncio program)."""
        self._runner = web.AppRunner(build_app(self.state, self.admin_token), access_log=None)
        await self._runner.setup()
        site = web.SockSite(self._runner, self._sock, ssl_context=self.tls.server_context())
        await site.start()

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> SandboxServer:
        """Serve from a background thread; returns once the server accepts connections."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
            self._loop = None
        self._sock.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
