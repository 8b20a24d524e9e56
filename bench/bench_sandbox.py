"""The sandbox at nightly-benchmark scale: 1,000,000 Contacts, 10% opted out.

Prints: seeding time (against building the same number of plain dicts), then over HTTPS on 127.0.0.1 paging the
opted-out Contacts through REST query (2000 a page), a Bulk API 2.0 query of every Contact as CSV, and sObject
Collections writes of 200 records; each with records/s and the time per call against a trivial API call
(GET /limits) as the baseline, so the figures read as "how much the sandbox itself costs" per request.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import requests

from unsubscribe_sync.sandbox import SandboxServer, SandboxState

CONTACTS = 1_000_000
OPTED_OUT_RATIO = 0.1


def _timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    state = SandboxState()
    seed_s = _timed(lambda: state.seed(contacts=CONTACTS, opted_out_ratio=OPTED_OUT_RATIO))
    baseline_s = _timed(lambda: [{"Id": str(n), "Email": f"c{n}@example.com", "opt": False} for n in range(CONTACTS)])
    print(
        f"seed {CONTACTS:,} Contacts: {seed_s:.2f}s  (plain dicts: {baseline_s:.2f}s, ratio {seed_s / baseline_s:.1f}x)"
    )

    with tempfile.TemporaryDirectory() as tmp, SandboxServer(Path(tmp), state) as server:
        http = requests.Session()
        http.trust_env = False
        http.verify = str(server.ca_file)
        token = http.post(
            f"{server.url}/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": server.credentials.client_id,
                  "client_secret": server.credentials.client_secret},
        ).json()["access_token"]  # fmt: skip
        http.headers["Authorization"] = f"Bearer {token}"
        base = f"{server.url}/services/data/v62.0"

        trivial_calls = 200
        trivial_s = _timed(lambda: [http.get(f"{base}/limits").raise_for_status() for _ in range(trivial_calls)])
        per_trivial = trivial_s / trivial_calls
        print(f"baseline GET /limits: {per_trivial * 1000:.2f} ms/call")

        pages = 0
        records = 0

        def page_through() -> None:
            nonlocal pages, records
            soql = "SELECT Id, Email FROM Contact WHERE HasOptedOutOfEmail = true ORDER BY Id"
            page = http.get(f"{base}/query", params={"q": soql}).json()
            while True:
                pages += 1
                records += len(page["records"])
                if page["done"]:
                    break
                page = http.get(server.url + page["nextRecordsUrl"]).json()

        rest_s = _timed(page_through)
        print(
            f"REST query opted-out: {records:,} records in {pages} pages, {rest_s:.2f}s, "
            f"{records / rest_s:,.0f} rec/s, "
            f"{rest_s / pages * 1000:.1f} ms/page ({rest_s / pages / per_trivial:.1f}x baseline call)"
        )

        state.set_bulk_processing_time(0.0)
        bulk_rows = 0
        bulk_pages = 0

        def bulk_query() -> None:
            nonlocal bulk_rows, bulk_pages
            job = http.post(f"{base}/jobs/query", json={"operation": "query", "query": "SELECT Id, Email, "
                            "HasOptedOutOfEmail FROM Contact"}).json()  # fmt: skip
            while http.get(f"{base}/jobs/query/{job['id']}").json()["state"] != "JobComplete":
                time.sleep(0.01)
            locator = ""
            while locator != "null":
                params = {"maxRecords": "100000", **({"locator": locator} if locator else {})}
                response = http.get(f"{base}/jobs/query/{job['id']}/results", params=params)
                bulk_rows += int(response.headers["Sforce-NumberOfRecords"])
                bulk_pages += 1
                locator = response.headers["Sforce-Locator"]

        bulk_s = _timed(bulk_query)
        print(
            f"Bulk 2.0 query all: {bulk_rows:,} rows in {bulk_pages} CSV pages, {bulk_s:.2f}s, "
            f"{bulk_rows / bulk_s:,.0f} rows/s"
        )

        targets = state.find_ids("Contact", HasOptedOutOfEmail=False)[:20_000]
        calls = len(targets) // 200

        def write_collections() -> None:
            for n in range(calls):
                chunk = targets[n * 200 : (n + 1) * 200]
                batch = [{"attributes": {"type": "Contact"}, "id": i, "HasOptedOutOfEmail": True} for i in chunk]
                body = {"allOrNone": False, "records": batch}
                results = http.patch(f"{base}/composite/sobjects", json=body).json()
                assert all(r["success"] for r in results)

        write_s = _timed(write_collections)
        print(
            f"Collections PATCH: {len(targets):,} records in {calls} calls, {write_s:.2f}s, "
            f"{len(targets) / write_s:,.0f} rec/s, {write_s / calls * 1000:.1f} ms/call "
            f"({write_s / calls / per_trivial:.1f}x baseline call)"
        )


if __name__ == "__main__":
    main()
