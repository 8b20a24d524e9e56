"""The config file every command reads (contract keys in the README, "Config file", plus optional extras)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from unsubscribe_sync.api.spec import MatchingMode, OptOutTarget, SalesforceObject, default_objects


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the offending key.

    ``problems`` lists (key path, reason) pairs when the file parsed but failed validation.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SalesforceConfig(_Section):
    loginUrl: str = Field(default="https://login.salesforce.com", pattern=r"^https?://[^\s/]+(/.*)?$")
    apiVersion: str = Field(default="62.0", pattern=r"^[0-9]{2,3}\.0$")
    credentialsDir: Path = Path("/etc/unsubscribe-sync/salesforce")
    caFile: Path | None = None  # CA(s) trusted on top of certifi's roots (e.g. a TLS-inspecting proxy's)
    objects: list[SalesforceObject] = Field(default_factory=default_objects, min_length=1)
    # Extras (not part of the contract):
    insecureSkipTlsVerify: bool = False
    # JWT bearer: the assertion's audience; default derived from loginUrl (login/test.salesforce.com).
    jwtAudience: str | None = Field(default=None, pattern=r"^https://[^\s/]+/?$")
    # The hard deadline of one Salesforce HTTP call, connect + the whole answer (salesforce/transport.py).
    requestTimeoutSeconds: float = Field(default=30.0, gt=0)
    bulkThreshold: int = Field(default=10_000, ge=1)
    apiReserveRatio: float = Field(default=0.1, ge=0, lt=1)

    @field_validator("objects")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("objects must not repeat")
        return value


class OptOutConfig(_Section):
    target: OptOutTarget = OptOutTarget.EMAIL_OPT_OUT
    marketoSalesOptOutField: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$")


class MatchingConfig(_Section):
    # SalesforceId: the record named by salesforceId only. Email: every record whose Email is the address.
    mode: MatchingMode = MatchingMode.SALESFORCE_ID

    @property
    def by_email(self) -> bool:
        return self.mode is MatchingMode.EMAIL


class NightlyConfig(_Section):
    enabled: bool = True
    sampleSize: int = Field(default=10, ge=0)
    # The blast-radius guard (nightly/guard.py): unset = no guard.
    maxChangeRatio: float | None = Field(default=None, gt=0, le=1)
    maxChanges: int | None = Field(default=None, ge=0)
    # How long a run waits for the writes it queued to be written; rows still queued then are counted
    # retryLater and left to the push, which writes them later.
    drainTimeoutSeconds: float = Field(default=1800.0, ge=0)


class SalesforcePollConfig(_Section):
    """The incremental pull of opt-outs set in Salesforce (worker/poll.py); runs only while nightly is enabled."""

    # Seconds between polls; 0 = off. Any value from 1 up here (tests use seconds); the CRD asks for 30 or more.
    intervalSeconds: int = Field(default=300, ge=0)
    # Each poll reads back this far before the stored watermark: SystemModstamp is not commit-ordered.
    lookbackSeconds: int = Field(default=300, ge=0)


class LedgerConfig(_Section):
    url: str | None = None
    urlFile: Path | None = None
    # Extras (PostgreSQL; README "Ledger timeouts"): a database that stops answering cannot hang the worker.
    connectTimeoutSeconds: int = Field(default=5, ge=2)  # libpq connect_timeout (its floor is 2 s)
    statementTimeoutSeconds: float = Field(default=30.0, gt=0)  # server side: statement_timeout
    lockTimeoutSeconds: float = Field(default=10.0, gt=0)  # server side: lock_timeout
    idleInTransactionTimeoutSeconds: float = Field(default=60.0, gt=0)  # idle_in_transaction_session_timeout
    keepalivesIdleSeconds: int = Field(default=30, ge=1)  # TCP keepalives (libpq keepalives_*)
    keepalivesIntervalSeconds: int = Field(default=10, ge=1)
    keepalivesCount: int = Field(default=3, ge=1)
    tcpUserTimeoutSeconds: int = Field(default=30, ge=0)  # libpq tcp_user_timeout; 0 = the kernel's default
    poolTimeoutSeconds: float = Field(default=5.0, gt=0)  # wait for a free pooled connection (SQLite too)
    # Longest wait for any one answer before the connection is dropped; unset: statementTimeoutSeconds + 5.
    responseTimeoutSeconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> LedgerConfig:
        if self.url is None and self.urlFile is None:
            self.url = "sqlite:////var/lib/unsubscribe-sync/ledger.db"
        if self.url is not None and self.urlFile is not None:
            raise ValueError("set either url or urlFile, not both")
        if self.url is not None and not self.url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("url must start with sqlite:// or postgresql://")
        return self

    def resolve_url(self) -> str:
        """The database URL (read from urlFile when set). Never log the result: it may hold a password."""
        if self.urlFile is not None:
            try:
                value = self.urlFile.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"ledger.urlFile: cannot read {self.urlFile}: {exc.strerror}") from None
            if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
                raise ConfigError(f"ledger.urlFile: {self.urlFile} does not hold a sqlite:// or postgresql:// URL")
            return value
        assert self.url is not None
        return self.url

    @property
    def is_sqlite(self) -> bool:
        return self.url is not None and self.url.startswith("sqlite://")


LISTEN_PATTERN = r"^[^\s:]*:[0-9]{1,5}$"


class WorkerConfig(_Section):
    listen: str = Field(default="0.0.0.0:8080", pattern=LISTEN_PATTERN)
    tokenFile: Path = Path("/etc/unsubscribe-sync/webhook/token")
    url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://")
    # Extras:
    batchSize: int = Field(default=200, ge=1, le=200)
    batchWindowSeconds: float = Field(default=0.05, ge=0)
    # The group committer's queue: items waiting for a commit (at least one full request of 1000 items), and how
    # long a request may wait in it; past either the request gets 503 with Retry-After and nothing is stored.
    maxQueuedItems: int = Field(default=20_000, ge=1000)
    maxQueueWaitSeconds: float = Field(default=10.0, gt=0)
    # Attempts after which a write failing on transient errors is reported stuck (history, metric, alert); it is
    # still retried: only errors Salesforce calls permanent end a record.
    maxAttempts: int = Field(default=50, ge=1)
    # How long a writer holds claimed outbox rows; renewed every third of it while a call runs.
    leaseSeconds: float = Field(default=60.0, gt=0)
    # Event ids are remembered this long for idempotency (a replay after that is stored as a repeat, no change).
    processedEventsRetentionDays: float = Field(default=30.0, gt=0)
    # Request-body bytes held in memory at once across the worker (each body is at most 1 MiB); a request that
    # finds no room within the body-read timeout gets 503 with Retry-After.
    maxBodyBytesInFlight: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024)
    # The public listener (one-click links, sender webhooks); null = off.
    publicListen: str | None = Field(default="0.0.0.0:8081", pattern=LISTEN_PATTERN)

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0] or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def public_host(self) -> str | None:
        return None if self.publicListen is None else self.publicListen.rsplit(":", 1)[0] or "0.0.0.0"

    @property
    def public_port(self) -> int | None:
        return None if self.publicListen is None else int(self.publicListen.rsplit(":", 1)[1])

    def read_token(self) -> str:
        try:
            token = self.tokenFile.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"worker.tokenFile: cannot read {self.tokenFile}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"worker.tokenFile: {self.tokenFile} is empty")
        return token


def read_secret_file(key: str, path: Path) -> str:
    """The stripped text of a secret file; ConfigError naming ``key`` (never the content) when unusable."""
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return value


class SendGridConfig(_Section):
    # The Signed Event Webhook verification key (ECDSA P-256): base64 DER as SendGrid shows it, or PEM.
    publicKeyFile: Path


class MailgunConfig(_Section):
    # The HTTP webhook signing key (Mailgun: Sending > Webhooks).
    signingKeyFile: Path


class PostmarkConfig(_Section):
    # "user:password" of the HTTP basic auth put in the webhook URL registered in Postmark.
    basicAuthFile: Path


class MandrillConfig(_Section):
    webhookKeyFile: Path
    # The webhook URL exactly as registered in Mandrill (it is part of what Mandrill signs).
    url: str = Field(pattern=r"^https?://\S+$")


SNS_CERT_HOST_PATTERN = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"


class SesConfig(_Section):
    # The SNS topics whose notifications are accepted (others are refused).
    topicArns: list[str] = Field(min_length=1)
    # Hosts SigningCertURL and SubscribeURL may point at.
    certHostPattern: str = SNS_CERT_HOST_PATTERN
    # CA bundle trusted for the certificate host (default: the system's).
    caFile: Path | None = None

    @field_validator("topicArns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not arn.startswith("arn:"):
                raise ValueError(f"{arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
        return value

    @field_validator("certHostPattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class SendersConfig(_Section):
    """Native email-service webhooks on the public listener; each is off until its section is given."""

    sendgrid: SendGridConfig | None = None
    mailgun: MailgunConfig | None = None
    postmark: PostmarkConfig | None = None
    mandrill: MandrillConfig | None = None
    ses: SesConfig | None = None


class OneClickConfig(_Section):
    """RFC 8058 one-click unsubscribe links; off until ``keyFile`` is given."""

    # One HMAC key per line: the first signs new links, every line verifies (rotation).
    keyFile: Path | None = None
    # Where the public listener is reachable from the internet (links are <baseUrl>/u/<token>).
    baseUrl: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    # Links older than this are refused; unset: links never expire (CAN-SPAM wants at least 30 days).
    maxAgeDays: int | None = Field(default=None, ge=30)

    @property
    def enabled(self) -> bool:
        return self.keyFile is not None


class LoggingConfig(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    salesforce: SalesforceConfig = Field(default_factory=SalesforceConfig)
    optOut: OptOutConfig = Field(default_factory=OptOutConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    nightly: NightlyConfig = Field(default_factory=NightlyConfig)
    salesforcePoll: SalesforcePollConfig = Field(default_factory=SalesforcePollConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    senders: SendersConfig = Field(default_factory=SendersConfig)
    oneClick: OneClickConfig = Field(default_factory=OneClickConfig)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append((key, msg))
    return problems


def parse_config(data: Any, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc)
        raise ConfigError(f"{source}: " + "; ".join(f"{k}: {m}" for k, m in problems), problems) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; a bad file raises ConfigError naming the key."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, str(p))
