"""The fleet's settings model: :class:`FleetSettings` and its sections, validated by pydantic.

:mod:`supervisor.settings` loads it (the file, the environment overrides, the problems).
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway import addresses
from gateway.config import GatewayConfig
from gateway.secret_refs import SecretRef
from gateway.time_fields import ClockTime, Duration
from plugins.config import StrategyConfig
from supervisor import schedules
from supervisor.alertpolicy import Severity
from supervisor.schedules import Region

ENV_PREFIX = "IBFLEET_"
ENV_DELIMITER = "__"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeKind(enum.StrEnum):
    DOCKER = "docker"
    SWARM = "swarm"  # each gateway a Swarm service, placed by node labels (gateway.swarm_runtime)
    IN_PROCESS = "in-process"  # simulated gateways inside the supervisor (simulator only)


def _severity_name(value: object) -> Severity:
    if isinstance(value, Severity):
        return value
    if isinstance(value, str):
        return Severity.parse(value)
    raise ValueError(f"severity {value!r}: expected one of info, warning, critical")


#: The alert policy's one Severity, written in the fleet file by name (``warning``).
SeverityName = Annotated[
    Severity,
    BeforeValidator(_severity_name),
    PlainSerializer(lambda s: s.name.lower(), return_type=str, when_used="json"),
]


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = {**{d: d for d in _DAYS}, **{f: d for f, d in zip(_FULL_DAYS, _DAYS, strict=True)}}


class UpdateWindow(_Strict):
    """When a change that costs a full login (a recreate) may be rolled out by itself."""

    days: list[str] = Field(
        default_factory=lambda: list(_DAYS),
        min_length=1,
        description="Days the window opens, in the fleet's timezone: mon, tue, ..., sun. "
        "Default every day.",
    )
    start: ClockTime = Field(description="24-hour HH:MM the window opens, in the fleet's timezone.")
    length: Duration = Field(
        ge=dt.timedelta(minutes=5),
        le=dt.timedelta(days=7),
        description="How long it stays open (5m-7d), e.g. 2h.",
    )

    @field_validator("days", mode="before")
    @classmethod
    def _day_names(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return value
        out = []
        for index, day in enumerate(value):
            key = _DAY_NAMES.get(str(day).strip().lower())
            if key is None:
                raise ValueError(f"days[{index}]: {day!r} is not a day; write mon, tue, ..., sun")
            out.append(key)
        return out

    @property
    def weekdays(self) -> frozenset[int]:
        """The days as ``datetime.weekday()`` numbers (Monday 0)."""
        return frozenset(_DAYS.index(day) for day in self.days)


class RuntimeSettings(_Strict):
    """Where and how gateway containers run."""

    kind: RuntimeKind = Field(
        default=RuntimeKind.DOCKER,
        description="docker | swarm | in-process. docker: containers on this host's engine. "
        "swarm: each gateway a one-task service of the Docker Swarm this host manages, on an "
        "overlay network, placed by gateways[].placement (see the README's Several hosts). "
        "in-process: simulated gateways inside the supervisor (only with simulator.enabled). "
        "Default docker.",
    )
    network: str = Field(
        default="ibfleet",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Docker network the fleet's containers share (on swarm an overlay "
        "network). Default ibfleet.",
    )
    image: str = Field(
        default="ghcr.io/gnzsnz/ib-gateway:stable",
        min_length=1,
        description="Gateway image (gnzsnz/ib-gateway contract).",
    )
    update_window: UpdateWindow | None = Field(
        default=None,
        description="When recreates that need a full login (and on live an IB Key prompt) are "
        "rolled out by themselves: {days: [sat], start: '02:00', length: 4h}. Outside it such "
        "a change waits, shown by `ibfleet plan` and `ibfleet status`, until the window or "
        "`ibfleet apply`. Default none: changes roll out at once.",
    )
    unprotected_live: bool = Field(
        default=False,
        description="Run live gateways even where ibfleet cannot install its firewall rules "
        "(a supervisor in a container whose firewall helper the engine refuses; any "
        "runtime.kind swarm): any local user and any container (on Swarm: any service on the "
        "fleet's overlay network) could then reach their API port and IBC's command server. "
        "Default false: such a supervisor refuses to start a fleet with live gateways.",
    )


class SimulatorSettings(_Strict):
    """Run the whole fleet against ibfleet's built-in IB simulator."""

    enabled: bool = Field(default=False, description="Use the simulator. Default false.")
    image: str = Field(
        default="ibfleet-sim:latest", description="Simulator image (built by `ibfleet sim image`)."
    )
    control_port: int = Field(
        default=8780,
        ge=1,
        le=65535,
        description="Host port (127.0.0.1) of the simulated broker's control API. Default 8780.",
    )
    twofa_gateways: list[str] = Field(
        default_factory=list,
        description="Gateways whose simulated logins wait for a 2FA approval (POST "
        "/2fa/USER/approve on the control API). Default none.",
    )


class AlertRoute(_Strict):
    """Where alerts of at least a given severity go (apprise URLs)."""

    urls: list[SecretRef] = Field(
        min_length=1,
        description="apprise URLs (slack://, mailto://, json://, ...); literal or {env}/{file}. "
        "They carry credentials and are never printed.",
    )
    min_severity: SeverityName = Field(
        default=Severity.WARNING, description="info | warning | critical. Default warning."
    )


class AlertSettings(_Strict):
    """Alert routing and repetition."""

    routes: list[AlertRoute] = Field(default_factory=list, description="Alert routes.")
    repeat_critical_every: Duration = Field(
        default=dt.timedelta(minutes=10),
        description="Repeat an unresolved critical alert this often. Default 10m.",
    )
    markets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Strategy name -> the exchanges its instruments trade on (IB codes such as "
        "NYSE, LSE, GLOBEX, SMART/USD, or exchange-calendars names such as XNYS). A gateway "
        "lost while one of its strategies' markets is in session is critical, outside every "
        "session a warning. Default: a strategy not listed trades US equities (XNYS).",
    )
    gateway_severity: dict[str, SeverityName] = Field(
        default_factory=dict,
        description="Gateway name -> severity (info | warning | critical) of losing a gateway "
        "that no strategy names. Default warning.",
    )

    @field_validator("markets")
    @classmethod
    def _known_markets(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if value:
            # Imported here: the calendars are only loaded when a fleet names markets.
            from supervisor.severity import calendar_of

            for strategy, markets in value.items():
                for index, market in enumerate(markets):
                    calendar_of(market, where=f"{strategy}[{index}]")
        return value


class ApiSettings(_Strict):
    """The supervisor's HTTP API (health, readiness, metrics, operations)."""

    listen: str = Field(default="127.0.0.1:8710", description="host:port. Default 127.0.0.1:8710.")
    token: SecretRef | None = Field(
        default=None, description="Bearer token for POST endpoints: {env: NAME} or {file: PATH}."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the API answers to besides localhost and IP addresses (a "
        "request naming another Host is refused: DNS rebinding). Default none.",
    )
    docs: bool = Field(default=False, description="Serve /docs and /openapi.json. Default false.")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:8710")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def is_loopback(self) -> bool:
        return addresses.is_loopback(self.host)


class StorageSettings(_Strict):
    """The supervisor's journal: a SQLite file (one host) or a PostgreSQL database (shared)."""

    path: Path = Field(
        default=Path("./ibfleet-journal.sqlite"),
        description="SQLite journal file (not used when url is set). "
        "Default ./ibfleet-journal.sqlite.",
    )
    url: str | None = Field(
        default=None,
        description="postgresql://USER@HOST:PORT/DATABASE: keep the journal in PostgreSQL "
        "instead, shared by a leader and its standbys (a lease says which one acts). No "
        "password in it: see password. Default none (the SQLite file).",
    )
    password: SecretRef | None = Field(
        default=None,
        description="The PostgreSQL password: {env: NAME} or {file: PATH}; never printed. "
        "Without it libpq's PGPASSWORD or PGPASSFILE (~/.pgpass) apply. Default none.",
    )
    lease: Duration = Field(
        default=dt.timedelta(seconds=5),
        ge=dt.timedelta(seconds=1),
        le=dt.timedelta(seconds=60),
        description="With url: how long the leader's lease lasts unrenewed (renewed every "
        "third of it); a standby takes over at most this long after the leader stops. "
        "1s-60s. Default 5s.",
    )
    write_wait: Duration = Field(
        default=dt.timedelta(milliseconds=500),
        ge=dt.timedelta(milliseconds=50),
        le=dt.timedelta(seconds=10),
        description="Longest wait for the journal (its lock, a busy disk or server; with url "
        "the statement and lock timeouts, connect at least 2s): an order intent not "
        "written within it is refused, never sent, and the journal is reported unwritable "
        "(critical alert, /readyz 503). 50ms-10s. Default 500ms.",
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "storage.url must start with postgresql:// (e.g. "
                "postgresql://ibfleet@db.example:5432/ibfleet); for SQLite set storage.path"
            )
        if parts.password is not None or any(
            k == "password" for k, _ in parse_qsl(parts.query, keep_blank_values=True)
        ):
            # The password is dropped from the message: the URL is never echoed back.
            raise ValueError(
                "storage.url must not hold a password (it would be printed and logged); "
                "put it in storage.password: {file: PATH} or {env: NAME}"
            )
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise ValueError("storage.url names no database: postgresql://USER@HOST:PORT/DATABASE")
        return value

    @model_validator(mode="after")
    def _password_needs_url(self) -> StorageSettings:
        if self.password is not None and self.url is None:
            raise ValueError("storage.password is set but storage.url is not")
        return self

    @property
    def where(self) -> str:
        """The journal's name in messages: the URL (it holds no password) or the file."""
        return self.url if self.url is not None else str(self.path)


class HealthSettings(_Strict):
    """How the supervisor probes each gateway."""

    heartbeat_every: Duration = Field(
        default=dt.timedelta(milliseconds=500),
        ge=dt.timedelta(milliseconds=200),
        le=dt.timedelta(seconds=60),
        description="How often the probe asks the gateway something it answers by itself: "
        "reqCurrentTime, never less than 1.2 s after the previous one on a connection (Gateway "
        "10.16+ may leave closer ones unanswered), else reqOpenOrders on the probe's own client "
        "id. A stall is seen within heartbeat_every + heartbeat_deadline. 200ms-60s. "
        "Default 500ms.",
    )
    heartbeat_deadline: Duration = Field(
        default=dt.timedelta(milliseconds=800),
        ge=dt.timedelta(milliseconds=100),
        le=dt.timedelta(seconds=60),
        description="A heartbeat not answered within this, measured from its send, is missed "
        "(the gateway counts as stalled). 100ms-60s. Default 800ms.",
    )
    connect_deadline: Duration = Field(
        default=dt.timedelta(seconds=10), description="API connect deadline. Default 10s."
    )
    login_deadline: Duration = Field(
        default=dt.timedelta(minutes=5),
        description="Container start to logged in, 2FA excluded. Default 5m.",
    )
    after_window_grace: Duration = Field(
        default=dt.timedelta(minutes=10),
        description="Page if a gateway is not back this long after a reset window. Default 10m.",
    )
    reauth_warning: Duration = Field(
        default=dt.timedelta(hours=12),
        description="Warn this long before the weekly re-authentication. Default 12h.",
    )


class FleetSettings(BaseSettings):
    """The whole fleet: one root object, passed down to every part."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
    )

    fleet: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="The fleet's name (container label io.ibfleet.fleet).",
    )
    timezone: str = Field(
        default="America/New_York",
        description="IANA timezone of restart times, and the gateway containers' TZ (the clock "
        "IBC reads AutoRestartTime and ColdRestartTime on). Default America/New_York.",
    )
    region: Region = Field(
        default=Region.AMERICA,
        description="america | europe | asia: which IB server reset windows apply (and so "
        "where a gateway's default daily restart falls).",
    )
    runtime: RuntimeSettings = Field(
        default_factory=RuntimeSettings, description="Container runtime; see `runtime`."
    )
    simulator: SimulatorSettings = Field(
        default_factory=SimulatorSettings, description="Built-in simulator; see `simulator`."
    )
    gateways: list[GatewayConfig] = Field(
        default_factory=list, description="The gateways; see `gateways[]`."
    )
    alerts: AlertSettings = Field(
        default_factory=AlertSettings, description="Alert routing; see `alerts`."
    )
    api: ApiSettings = Field(default_factory=ApiSettings, description="HTTP API; see `api`.")
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="Journal; see `storage`."
    )
    health: HealthSettings = Field(
        default_factory=HealthSettings, description="Health probe timing; see `health`."
    )
    strategies: list[StrategyConfig] = Field(
        default_factory=list, description="Hosted strategies; see `strategies[]`."
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as America/New_York"
            ) from None
        return value

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def default_daily_restart(self) -> dt.time:
        """The daily restart of a gateway without ``restart.daily``: inside the region's window."""
        return schedules.default_daily_restart(self.region, self.tz)

    def daily_restart(self, gw: GatewayConfig) -> dt.time:
        """The time the Gateway restarts itself daily (IBC AutoRestartTime), on the fleet's clock.

        ``restart.daily`` when set, else :attr:`default_daily_restart`: the time ibfleet renders
        into config.ini, so IBC's own daily restart happens then, every day.
        """
        if gw.restart.daily is not None:
            return gw.restart.daily
        return self.default_daily_restart

    def gateway(self, name: str) -> GatewayConfig:
        for gw in self.gateways:
            if gw.name == name:
                return gw
        raise KeyError(name)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The loader has already merged the file and the environment (lists need overrides by
        # gateway or strategy name, which the stock env source cannot express).
        return (init_settings,)


# ---------------------------------------------------------------------------------------------
# Loading
