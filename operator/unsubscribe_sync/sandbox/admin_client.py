"""A small client of the admin API, for code that drives a sandbox running in another process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from .admin import ADMIN_HEADER


class SandboxAdminError(Exception):
    pass


class SandboxAdmin:
    """`SandboxAdmin("https://127.0.0.1:PORT/__sandbox", token, ca_file)`; methods mirror SandboxState."""

    def __init__(self, admin_url: str, token: str | None, ca_file: Path | str, timeout: float = 30.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.ca_file = str(ca_file)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
        if token:
            self.session.headers[ADMIN_HEADER] = token

    def _call(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Any:
        response = self.session.request(
            method, f"{self.admin_url}{path}", json=json, params=params, verify=self.ca_file, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise SandboxAdminError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json()

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", "/state"))

    def reset(self) -> dict[str, Any]:
        return dict(self._call("POST", "/reset"))

    def seed(self, contacts: int = 0, leads: int = 0, **options: Any) -> dict[str, Any]:
        """Options in the admin API's camelCase: optedOutRatio, convertedRatio, deletedRatio, rngSeed, ..."""
        return dict(self._call("POST", "/seed", {"contacts": contacts, "leads": leads, **options}))

    def add_record(
        self,
        sobject: str,
        email: str | None,
        opted_out: bool = False,
        converted: bool = False,
        deleted: bool = False,
        fields: dict[str, Any] | None = None,
    ) -> str:
        body = {"object": sobject, "email": email, "optedOut": opted_out, "converted": converted,
                "deleted": deleted, "fields": fields or {}}  # fmt: skip
        return str(self._call("POST", "/records", body)["id"])

    def get_record(self, record_id: str) -> dict[str, Any] | None:
        response = self.session.get(f"{self.admin_url}/records/{record_id}", verify=self.ca_file, timeout=self.timeout)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise SandboxAdminError(f"GET /records/{record_id}: HTTP {response.status_code}: {response.text}")
        return dict(response.json())

    def set_fields(self, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/records/{record_id}", {"fields": fields}))

    def find_ids(self, sobject: str, **equals: Any) -> list[str]:
        params = {
            "object": sobject,
            **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in equals.items()},
        }
        return list(self._call("GET", "/records", params=params)["ids"])

    def ids_by_email(self, email: str) -> list[str]:
        return list(self._call("GET", "/records", params={"email": email})["ids"])

    def configure_field(self, sobject: str, name: str, **options: Any) -> dict[str, Any]:
        """Options: label, updateable, hidden, present (False removes the field)."""
        return dict(self._call("POST", "/fields", {"object": sobject, "name": name, **options}))

    def faults(self) -> dict[str, Any]:
        return dict(self._call("GET", "/faults"))

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """camelCase keys of POST /__sandbox/faults: latencyMs, lockIds, lockRatio, lockNext, unavailable, ..."""
        return dict(self._call("POST", "/faults", faults))

    def writes(self, ids: list[str] | None = None) -> dict[str, Any]:
        params = {"ids": ",".join(ids)} if ids else None
        return dict(self._call("GET", "/writes", params=params))

    def calls(self) -> dict[str, int]:
        return dict(self._call("GET", "/calls"))

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the org's clock ahead (later writes' SystemModstamp, TODAY, LAST_N_DAYS)."""
        return dict(self._call("POST", "/clock", {"advanceSeconds": seconds}))
