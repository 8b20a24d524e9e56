"""The HTTP session every Salesforce call goes through: TLS trust and a default timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.salesforce.types import ErrorClass, SalesforceError

log = get_logger(__name__)


class _TimeoutAdapter(HTTPAdapter):
    """An adapter that applies a default timeout to requests made without one (simple-salesforce's bulk2)."""

    def __init__(self, timeout: float, pool_maxsize: int = 16) -> None:
        self._timeout = timeout
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def build_session(
    *, ca_file: Path | None, insecure_skip_tls_verify: bool, timeout: float, pool_maxsize: int = 16
) -> requests.Session:
    """A requests session that trusts ``ca_file`` (login and REST alike) and times out after ``timeout`` s.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override
    ``session.verify``; when a CA file (or no verification) is configured explicitly the
    session therefore ignores the environment (``trust_env = False``).
    """
    session = requests.Session()
    adapter = _TimeoutAdapter(timeout, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if insecure_skip_tls_verify:
        log.warning("salesforce.tls_verification_disabled", reason="salesforce.insecureSkipTlsVerify is true")
        session.verify = False
        session.trust_env = False
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    elif ca_file is not None:
        if not Path(ca_file).is_file():
            raise SalesforceError(
                f"salesforce.caFile: {ca_file} is not a readable file", error_class=ErrorClass.CONFIGURATION
            )
        session.verify = str(ca_file)
        session.trust_env = False
    return session
