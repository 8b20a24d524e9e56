"""The internal and public worker apps side by side over real HTTP, on one SQLite ledger (push off)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from unsubscribe_sync.api.config import Config, parse_config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.worker.app import create_app
from unsubscribe_sync.worker.public import create_public_app

TOKEN = "internal-bearer-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def public_config(tmp_path: Path, **sections: Any) -> Config:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    return parse_config(
        {
            "ledger": {"url": f"sqlite:///{tmp_path}/ledger.db"},
            "worker": {"tokenFile": str(token_file), "listen": "127.0.0.1:0", "publicListen": "127.0.0.1:0"},
            "salesforce": {"credentialsDir": str(tmp_path / "none")},
            **sections,
        }
    )


@dataclass
class Apps:
    internal: TestClient[Any, Any]
    public: TestClient[Any, Any]
    ledger: Ledger

    async def history(self, email: str) -> list[dict[str, Any]]:
        """The address's stored unsubscribes (its ``unsubscribed`` history entries; the push's entries left out)."""
        found = await self.internal.get(f"/v1/unsubscribes/{email}", headers=AUTH)
        if found.status == 404:
            return []
        return [e for e in (await found.json())["history"] if e["action"] == "unsubscribed"]

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the internal /metrics (0 when absent)."""
        text = await (await self.internal.get("/metrics")).text()
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Apps]:
    ledger = Ledger.open(config.ledger.resolve_url())
    try:
        internal_app = create_app(config, ledger=ledger, push=False)
        public_app = create_public_app(internal_app)
    except Exception:
        ledger.close()
        raise
    internal: TestClient[Any, Any] = TestClient(TestServer(internal_app))
    public: TestClient[Any, Any] = TestClient(TestServer(public_app))
    await internal.start_server()
    await public.start_server()
    try:
        yield Apps(internal, public, ledger)
    finally:
        await public.close()
        await internal.close()
        ledger.close()
