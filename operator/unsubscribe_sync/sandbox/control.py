"""The test-control side of the org: records, seeding, fields, faults, inspection (no API call counted)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from typing import Any

from .auth import ConnectedApp
from .faults import Faults
from .ids import normalize_id
from .org import Org
from .schema import FieldDef


class Control(Org):
    """What tests, the admin HTTP API and the demo call to set up and inspect the org."""

    def register_app(
        self,
        client_id: str,
        *,
        client_secret: str | None = None,
        public_key_pem: str | None = None,
        usernames: Iterable[str] = (),
    ) -> ConnectedApp:
        """A connected app for the client credentials flow (secret) and/or the JWT flow (public key, users)."""
        with self.lock:
            return self.auth.register(client_id, client_secret, public_key_pem, usernames)

    def add_record(
        self,
        sobject: str,
        email: str | None,
        opted_out: bool = False,
        converted: bool = False,
        deleted: bool = False,
        fields: dict[str, Any] | None = None,
    ) -> str:
        """Create a record directly (no API call counted); returns its 18-character ID."""
        with self.lock:
            table = self._table(sobject)
            if converted and sobject != "Lead":
                raise ValueError("only Leads can be converted")
            values: dict[str, Any] = {
                "Email": email,
                "LastName": "Sandbox",
                "HasOptedOutOfEmail": opted_out,
                "IsDeleted": deleted,
            }
            if sobject == "Lead":
                values["IsConverted"] = converted
            values.update(self._canonical_values(table, fields or {}))
            return table.append(values)

    def get_record(self, record_id: str) -> dict[str, Any] | None:
        """All fields of a record (hidden and deleted ones too) plus "attributes": {"type"}, or None."""
        with self.lock:
            located = self._locate(record_id)
            if located is None:
                return None
            table, row = located
            return {"attributes": {"type": table.schema.name}, **table.get(row)}

    def set_fields(self, record_id: str, fields: dict[str, Any]) -> None:
        """Change fields directly, as a user in the Salesforce UI would (no API call, no write counted): the
        record's LastModifiedDate and SystemModstamp move, unless `fields` sets SystemModstamp itself."""
        with self.lock:
            located = self._locate(record_id)
            if located is None:
                raise KeyError(f"no record {record_id}")
            table, row = located
            values = self._canonical_values(table, fields)
            for name, value in values.items():
                table.set(row, name, value)
            if "SystemModstamp" not in values:
                self._touch(table, row)

    def delete_record(self, record_id: str) -> None:
        self.set_fields(record_id, {"IsDeleted": True})

    def find_ids(self, sobject: str, **equals: Any) -> list[str]:
        """IDs (in ID order) of live records whose fields equal the given values, e.g. HasOptedOutOfEmail=True."""
        with self.lock:
            table = self._table(sobject)
            wanted = self._canonical_values(table, equals)
            deleted = table.true_rows["IsDeleted"]
            rows: Iterable[int] = range(len(table))
            for name, value in wanted.items():
                if value is True and name in table.true_rows:
                    rows = sorted(table.true_rows[name])
                    break
            return [
                table.ids[row]
                for row in rows
                if row not in deleted and all(table.columns[n][row] == v for n, v in wanted.items())
            ]

    def count(self, sobject: str, **equals: Any) -> int:
        return len(self.find_ids(sobject, **equals))

    def ids_by_email(self, email: str) -> list[str]:
        with self.lock:
            return [table.ids[row] for table in self.tables.values() for row in table.rows_with_email(email)]

    def seed(
        self,
        contacts: int = 0,
        leads: int = 0,
        *,
        opted_out_ratio: float = 0.1,
        marketo_opted_out_ratio: float = 0.0,
        converted_ratio: float = 0.05,
        deleted_ratio: float = 0.01,
        email_domain: str = "example.com",
        rng_seed: int | None = None,
    ) -> dict[str, dict[str, int]]:
        """Add `contacts` Contacts and `leads` Leads; exact shares of them opted out / converted / deleted,
        chosen by a seeded generator (same arguments, same org). Returns counts per object."""
        for name, ratio in (
            ("opted_out_ratio", opted_out_ratio),
            ("marketo_opted_out_ratio", marketo_opted_out_ratio),
            ("converted_ratio", converted_ratio),
            ("deleted_ratio", deleted_ratio),
        ):
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {ratio}")
        if contacts < 0 or leads < 0:
            raise ValueError("record counts must not be negative")
        summary: dict[str, dict[str, int]] = {}
        with self.lock:
            rng = random.Random(self.rng_seed if rng_seed is None else rng_seed)
            for sobject, count in (("Contact", contacts), ("Lead", leads)):
                if count:
                    summary[sobject] = self._seed_table(
                        sobject, count, rng, opted_out_ratio, marketo_opted_out_ratio, converted_ratio,
                        deleted_ratio, email_domain,
                    )  # fmt: skip
        return summary

    def _seed_table(
        self,
        sobject: str,
        count: int,
        rng: random.Random,
        opted_out_ratio: float,
        marketo_ratio: float,
        converted_ratio: float,
        deleted_ratio: float,
        email_domain: str,
    ) -> dict[str, int]:
        table = self.tables[sobject]
        first = len(table) + 1
        stem = sobject.lower()

        def flags(ratio: float) -> list[bool]:
            chosen = [False] * count
            for index in rng.sample(range(count), round(ratio * count)):
                chosen[index] = True
            return chosen

        first_names = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
        last_names = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman"]
        columns: dict[str, list[Any]] = {
            "FirstName": [first_names[i % len(first_names)] for i in range(count)],
            "LastName": [last_names[i % len(last_names)] for i in range(count)],
            "Email": [f"{stem}{n}@{email_domain}" for n in range(first, first + count)],
            "HasOptedOutOfEmail": flags(opted_out_ratio),
            "IsDeleted": flags(deleted_ratio),
        }
        marketo = [f.name for f in table.schema.custom.values() if f.type == "boolean"]
        if marketo and marketo_ratio:
            columns[marketo[0]] = flags(marketo_ratio)
        if sobject == "Lead":
            columns["IsConverted"] = flags(converted_ratio)
        table.append_many(count, columns)
        result = {
            "created": count,
            "optedOut": sum(columns["HasOptedOutOfEmail"]),
            "deleted": sum(columns["IsDeleted"]),
        }
        if sobject == "Lead":
            result["converted"] = sum(columns["IsConverted"])
        if marketo and marketo_ratio:
            result["marketoOptedOut"] = sum(columns[marketo[0]])
        return result

    # ------------------------------------------------------------------ fields

    def configure_field(
        self,
        sobject: str,
        name: str,
        *,
        label: str,
        updateable: bool = True,
        hidden: bool = False,
    ) -> None:
        """Install (or change) a custom boolean field on an object."""
        if not name.endswith("__c"):
            raise ValueError(f"custom field API names end in __c: {name!r}")
        with self.lock:
            table = self._table(sobject)
            definition = FieldDef(name, label, "boolean", updateable=updateable, custom=True, hidden=hidden,
                                  default=False)  # fmt: skip
            table.schema.set_custom(definition)
            table.ensure_column(definition)

    def hide_standard_field(self, sobject: str, name: str, hidden: bool = True) -> None:
        """Hide a standard field (e.g. Email) from the integration user by field-level security, or show it again."""
        with self.lock:
            self._table(sobject).schema.set_standard_hidden(name, hidden)

    def remove_field(self, sobject: str, name: str) -> None:
        """Uninstall a custom field (its values stay stored, invisible, and come back if it is re-added)."""
        with self.lock:
            self._table(sobject).schema.remove_custom(name)

    # ------------------------------------------------------------------ faults

    def advance_clock(self, seconds: float) -> None:
        """Move the org's clock ahead (stamps of later writes, TODAY and LAST_N_DAYS): tests of incremental reads
        need "later" without sleeping."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self.lock:
            self.clock_offset_s += seconds

    def set_latency(self, milliseconds: float) -> None:
        if milliseconds < 0:
            raise ValueError("latency must not be negative")
        with self.lock:
            self.faults.latency_ms = float(milliseconds)

    def lock_records(self, ids: Iterable[str]) -> None:
        """UNABLE_TO_LOCK_ROW for every write to these records until unlocked."""
        normalized = []
        for record_id in ids:
            id18 = normalize_id(record_id)
            if id18 is None:
                raise ValueError(f"not a Salesforce ID: {record_id!r}")
            normalized.append(id18)
        with self.lock:
            self.faults.lock_ids.update(normalized)

    def unlock_records(self, ids: Iterable[str] | None = None) -> None:
        with self.lock:
            if ids is None:
                self.faults.lock_ids.clear()
            else:
                self.faults.lock_ids.difference_update(normalize_id(i) or i for i in ids)

    def set_lock_ratio(self, ratio: float) -> None:
        """UNABLE_TO_LOCK_ROW for this share of record writes (seeded random)."""
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("lock ratio must be between 0 and 1")
        with self.lock:
            self.faults.lock_ratio = ratio

    def lock_next_writes(self, count: int) -> None:
        """UNABLE_TO_LOCK_ROW for the next `count` record writes."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self.lock:
            self.faults.lock_next = count

    def set_unavailable(self, seconds: float | None = None) -> None:
        """Answer every API call with HTTP 503 for `seconds` (None: until clear_unavailable())."""
        with self.lock:
            self.faults.unavailable_until = math.inf if seconds is None else time.monotonic() + seconds

    def clear_unavailable(self) -> None:
        with self.lock:
            self.faults.unavailable_until = None

    def expire_sessions(self) -> int:
        """Invalidate every access token now; returns how many there were."""
        with self.lock:
            return self.auth.expire_all()

    def set_session_lifetime(self, seconds: float) -> None:
        """Lifetime of tokens issued from now on."""
        if seconds <= 0:
            raise ValueError("session lifetime must be positive")
        with self.lock:
            self.auth.session_lifetime_s = seconds

    def set_request_limit_exceeded(self, on: bool) -> None:
        with self.lock:
            self.faults.request_limit_exceeded = on

    def set_daily_api_limit(self, limit: int, used: int | None = None) -> None:
        if limit < 0 or (used is not None and used < 0):
            raise ValueError("limits must not be negative")
        with self.lock:
            self.daily_api_limit = limit
            if used is not None:
                self.api_usage = used

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = Faults()

    def fail_next_bulk_jobs(self, count: int) -> None:
        """The next `count` Bulk API 2.0 jobs to finish processing end in state Failed (nothing applied)."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self.lock:
            self.faults.bulk_fail_next = count

    def set_bulk_processing_time(self, seconds: float) -> None:
        with self.lock:
            self.bulk_processing_s = max(0.0, seconds)

    # ------------------------------------------------------------------ inspection

    def write_count(self, record_id: str) -> int:
        """Successful API updates of this record (single PATCH, collections, bulk ingest)."""
        with self.lock:
            return self.writes.get(normalize_id(record_id) or record_id, 0)

    def call_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.calls)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready summary for the admin API and reports."""
        with self.lock:
            objects = {}
            for name, table in self.tables.items():
                deleted = table.true_rows["IsDeleted"]
                objects[name] = {
                    "records": len(table) - len(deleted),
                    "deleted": len(deleted),
                    "optedOut": len(table.true_rows["HasOptedOutOfEmail"] - deleted),
                    "customFields": [
                        {"name": f.name, "label": f.label, "updateable": f.updateable, "hidden": f.hidden}
                        for f in table.schema.custom.values()
                    ],
                }
            return {
                "objects": objects,
                "apiUsage": {"used": self.api_usage, "max": self.daily_api_limit},
                "calls": dict(self.calls),
                "writes": {"total": sum(self.writes.values()), "records": len(self.writes)},
                "faults": self.faults.as_dict(),
                "sessions": len(self.auth.sessions),
                "sessionLifetimeSeconds": self.session_lifetime_s,
            }
