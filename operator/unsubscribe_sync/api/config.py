"""The config file every command reads (contract keys from DESIGN.md, plus optional extras)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from unsubscribe_sync.api.spec import OptOutTarget, SalesforceObject, default_objects


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
    caFile: Path | None = None
    objects: list[SalesforceObject] = Field(default_factory=default_objects, min_length=1)
    # Extras (not part of the contract):
    insecureSkipTlsVerify: bool = False
    # JWT bearer: the assertion's audience; default derived from loginUrl (login/test.salesforce.com).
    jwtAudience: str | None = Field(default=None, pattern=r"^https://[^\s/]+/?$")
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


class NightlyConfig(_Section):
    enabled: bool = True
    sampleSize: int = Field(default=10, ge=0)
    # The blast-radius guard (nightly/guard.py): unset = no guard.
    maxChangeRatio: float | None = Field(default=None, gt=0, le=1)
    maxChanges: int | None = Field(default=None, ge=0)


class LedgerConfig(_Section):
    url: str | None = None
    urlFile: Path | None = None

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


class WorkerConfig(_Section):
    listen: str = Field(default="0.0.0.0:8080", pattern=r"^[^\s:]*:[0-9]{1,5}$")
    tokenFile: Path = Path("/etc/unsubscribe-sync/webhook/token")
    url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://")
    # Extras:
    batchSize: int = Field(default=200, ge=1, le=200)
    batchWindowSeconds: float = Field(default=0.05, ge=0)
    maxAttempts: int = Field(default=50, ge=1)
    leaseSeconds: float = Field(default=60.0, gt=0)

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0] or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def read_token(self) -> str:
        try:
            token = self.tokenFile.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"worker.tokenFile: cannot read {self.tokenFile}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"worker.tokenFile: {self.tokenFile} is empty")
        return token


class LoggingConfig(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    salesforce: SalesforceConfig = Field(default_factory=SalesforceConfig)
    optOut: OptOutConfig = Field(default_factory=OptOutConfig)
    nightly: NightlyConfig = Field(default_factory=NightlyConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


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
