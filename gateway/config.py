"""The configuration of one gateway, as written in the fleet file's ``gateways`` list.

The gateway package owns its own configuration so that the container spec and the probe can be
built from it without importing the supervisor. Field descriptions carry units and defaults and
are the source of the README's fleet file reference.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway import addresses, swarm_placement
from gateway.secret_refs import SecretRef
from gateway.time_fields import ClockTime, Duration, WeeklyClock

MAX_CLIENT_ID = 2**31 - 1
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Strict(BaseModel):
    """Base for fleet file sections: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class TradingMode(enum.StrEnum):
    PAPER = "paper"
    LIVE = "live"


class TwoFactorTimeoutAction(enum.StrEnum):
    RESTART = "restart"
    EXIT = "exit"


class ExistingSessionAction(enum.StrEnum):
    PRIMARY = "primary"
    PRIMARY_OVERRIDE = "primaryoverride"
    SECONDARY = "secondary"
    MANUAL = "manual"


class MarketDataEntitlement(enum.StrEnum):
    """What market data an account is entitled to (the probe checks it; the simulator grants it)."""

    REALTIME = "realtime"
    DELAYED = "delayed"
    NONE = "none"


class ClientIdRange(Strict):
    """An inclusive range of TWS API client ids this gateway hands out."""

    start: Annotated[int, Field(ge=0, le=MAX_CLIENT_ID, description="First client id.")]
    end: Annotated[int, Field(ge=0, le=MAX_CLIENT_ID, description="Last client id (inclusive).")]

    @model_validator(mode="after")
    def _ordered(self) -> ClientIdRange:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is greater than end {self.end}")
        return self

    def __contains__(self, client_id: object) -> bool:
        return isinstance(client_id, int) and self.start <= client_id <= self.end

    def __len__(self) -> int:
        return self.end - self.start + 1


class TwoFactorConfig(Strict):
    """How the gateway's second factor is handled, and who restarts after a 2FA timeout.

    Exactly one mechanism reacts to a 2FA timeout (IBC's user guide advises against two):
    ``restart`` leaves it to IBC inside the container, ``exit`` leaves it to the supervisor.
    """

    device: str = Field(default="IB Key", description="IBC's SecondFactorDevice. Default IB Key.")
    timeout_action: TwoFactorTimeoutAction = Field(
        default=TwoFactorTimeoutAction.RESTART,
        description="Who restarts after a 2FA timeout: restart | exit. restart: IBC does "
        "(ReloginAfterSecondFactorAuthenticationTimeout=yes logs in again after an unanswered "
        "prompt; --on2fatimeout=restart relaunches after an approved login that did not "
        "complete) and the supervisor only alerts, stopping the gateway when the login budget "
        "is spent. exit: the supervisor does (relogin off, --on2fatimeout=exit: IBC waits at "
        "an unanswered prompt and exits after an approved login that did not complete; the "
        "supervisor restarts the container within the login budget). Default restart.",
    )
    exit_interval: Duration = Field(
        default=dt.timedelta(seconds=60),
        ge=dt.timedelta(seconds=10),
        le=dt.timedelta(minutes=10),
        description="IBC's SecondFactorAuthenticationExitInterval, whole seconds: after the "
        "prompt is approved, how long IBC waits for the login to complete before it exits "
        "(code 1111). 10s-10m. Default 60s.",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Unapproved 2FA prompts in a row before the gateway goes FATAL and waits "
        "for an operator. Default 3.",
    )

    @field_validator("exit_interval")
    @classmethod
    def _whole_seconds(cls, value: dt.timedelta) -> dt.timedelta:
        if value.total_seconds() != int(value.total_seconds()):
            raise ValueError("IBC reads whole seconds; write e.g. 60s or 2m")
        return value


class RestartConfig(Strict):
    """The gateway's scheduled restarts, in the fleet's timezone (the container's TZ)."""

    daily: ClockTime | None = Field(
        default=None,
        description="Daily auto-restart (IBC AutoRestartTime), 24-hour HH:MM in the fleet's "
        "timezone: the Gateway restarts itself and keeps the session (no login, no 2FA). "
        "Default: the middle of the region's daily IB reset window, in the fleet's timezone "
        "and inside the window in summer and winter alike (america in America/New_York: "
        "00:15; europe in Europe/Zurich: 06:15; asia in Asia/Hong_Kong: 20:37). ibfleet always "
        "renders an explicit time: left empty, the Gateway would restart at a time of its own.",
    )
    weekly_cold: WeeklyClock | None = Field(
        default=None,
        description="Weekly cold restart with a full login (IBC ColdRestartTime), 'Sun HH:MM' "
        "in the fleet's timezone. IBC cold-restarts only on Sunday in the container's timezone "
        "(the fleet's), so the day must be Sunday there; the time must also fall on Sunday "
        "after 01:00 New York time (IB's weekly re-authentication), in winter and summer. "
        "Default: none.",
    )


class ProbeContract(Strict):
    """A contract the permission check requests market data for."""

    symbol: str = Field(min_length=1, description="Symbol, e.g. AAPL or EUR.")
    sec_type: str = Field(default="STK", description="STK, CASH, FUT, ... Default STK.")
    exchange: str = Field(default="SMART", description="Exchange. Default SMART.")
    currency: str = Field(default="USD", description="Currency. Default USD.")
    expect: MarketDataEntitlement = Field(
        default=MarketDataEntitlement.REALTIME,
        description="Market data the account is entitled to: realtime | delayed | none.",
    )


class ResourceLimits(Strict):
    """The container's confinement beyond memory; every field is part of the spec hash."""

    cpus: float = Field(
        default=2.0,
        gt=0,
        le=64,
        description="CPUs the container may use (Docker --cpus). Default 2.",
    )
    pids: int = Field(
        default=1024,
        ge=64,
        le=65536,
        description="Process and thread limit (the Gateway's JVM runs ~100 threads). Default 1024.",
    )
    read_only_root: bool = Field(
        default=False,
        description="Read-only root filesystem with a tmpfs /tmp and the secrets in a volume. "
        "The gnzsnz image writes the Gateway's settings and autorestart file beside its jars "
        "in /home/ibgateway/Jts, so it needs a writable root; ibfleet's simulator image does "
        "not. Default false.",
    )
    log_max_size: str = Field(
        default="10m",
        pattern=r"^[1-9][0-9]*[kmg]$",
        description="Rotate the container's json-file log at this size (Docker syntax). "
        "Default 10m.",
    )
    log_max_files: int = Field(
        default=5, ge=1, le=100, description="Rotated log files kept. Default 5."
    )


class PlacementConfig(Strict):
    """Which Swarm nodes may run the gateway (``runtime.kind: swarm`` only)."""

    constraints: list[str] = Field(
        default_factory=list,
        description="Swarm placement constraints, all of which a node must meet: "
        "ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE over node.labels.NAME, node.hostname, node.role, "
        "node.id, node.platform.os/arch or engine.labels.NAME, e.g. node.labels.zone==a. Give "
        "a strategy's primary and failover gateways constraints that exclude each other "
        "(zone==a and zone==b) so they never share a node. Default none.",
    )
    preferences: list[str] = Field(
        default_factory=list,
        description="Swarm placement preferences: spread=node.labels.NAME. A preference spreads "
        "one service's tasks and never keeps two gateways apart; use constraints for that. "
        "Default none.",
    )

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: list[str]) -> list[str]:
        for index, text in enumerate(value):
            problem = swarm_placement.constraint_problem(text)
            if problem is not None:
                raise ValueError(f"constraints[{index}]: {problem}")
        return [str(swarm_placement.parse_constraint(text)) for text in value]

    @field_validator("preferences")
    @classmethod
    def _preferences(cls, value: list[str]) -> list[str]:
        for index, text in enumerate(value):
            problem = swarm_placement.preference_problem(text)
            if problem is not None:
                raise ValueError(f"preferences[{index}]: {problem}")
        return [text.strip() for text in value]

    def parsed_constraints(self) -> list[swarm_placement.Constraint]:
        return [swarm_placement.parse_constraint(text) for text in self.constraints]

    @property
    def spread(self) -> list[str]:
        """The spread descriptors (``node.labels.zone``) of the preferences, in order."""
        return [swarm_placement.parse_preference(text) for text in self.preferences]


class GatewayConfig(Strict):
    """One IB Gateway container: one IB session, one username."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique name: lower-case letters, digits and dashes (used in container names).",
    )
    mode: TradingMode = Field(description="paper | live.")
    account: str = Field(
        pattern=r"^[A-Z]{1,3}[0-9]{3,12}$",
        description="IB account id: paper ids start with D (DU...), live with U (or F).",
    )
    username: SecretRef = Field(description="IB username: {env: NAME} or {file: PATH}.")
    password: SecretRef = Field(description="IB password: {env: NAME} or {file: PATH}.")
    api_port: int = Field(ge=1, le=65535, description="Host port the TWS API is published on.")
    bind: ipaddress.IPv4Address | ipaddress.IPv6Address = Field(
        default=ipaddress.IPv4Address("127.0.0.1"),
        description="Host interface the API port is published on. Default 127.0.0.1.",
    )
    allow_public_bind: bool = Field(
        default=False, description="Must be true to publish on 0.0.0.0 or ::. Default false."
    )
    trusted_ips: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list,
        description="Sources besides the supervisor (and its strategies) admitted to the "
        "published API port; the runtime's iptables rules refuse everyone else. A remote "
        "network (with a non-loopback bind) is admitted through this gateway's port only; a "
        "loopback entry (127.0.0.1) admits every local user of the host. IPv4 only. Default "
        "[] (the supervisor alone).",
    )
    client_ids: ClientIdRange = Field(
        default_factory=lambda: ClientIdRange(start=1, end=49),
        description="Client ids leased to strategies and the probe: {start, end}. Default 1-49.",
    )
    probe_client_id: int | None = Field(
        default=None,
        ge=0,
        le=MAX_CLIENT_ID,
        description="Client id reserved for the supervisor's health probe. Default: the range's "
        "last id.",
    )
    read_only: bool = Field(default=False, description="Read-only API (no orders). Default false.")
    allow_live: bool = Field(
        default=False, description="A live gateway is refused unless this is true. Default false."
    )
    two_factor: TwoFactorConfig = Field(
        default_factory=TwoFactorConfig, description="2FA handling; see `gateways[].two_factor`."
    )
    logins_per_hour: int = Field(
        default=4,
        ge=1,
        le=20,
        description="Login attempts allowed per hour for this username (IB locks an account "
        "after repeated failures). Default 4.",
    )
    existing_session: ExistingSessionAction = Field(
        default=ExistingSessionAction.PRIMARY,
        description="IBC ExistingSessionDetectedAction: primary | primaryoverride | secondary | "
        "manual. Default primary.",
    )
    restart: RestartConfig = Field(
        default_factory=RestartConfig, description="Scheduled restarts; see `gateways[].restart`."
    )
    memory_limit: str = Field(
        default="1536m",
        pattern=r"^[0-9]+[kmg]$",
        description="Container memory limit (Docker syntax, e.g. 1536m, 2g). Default 1536m.",
    )
    resources: ResourceLimits = Field(
        default_factory=ResourceLimits,
        description="CPU, process, log and root-filesystem limits; see `gateways[].resources`.",
    )
    image: str | None = Field(
        default=None, description="Image for this gateway. Default: runtime.image."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra container environment (JAVA_HEAP_SIZE, ...). Never put a secret here.",
    )
    probes: list[ProbeContract] = Field(
        default_factory=list,
        description="Contracts the permission check requests; see `gateways[].probes[]`.",
    )
    placement: PlacementConfig | None = Field(
        default=None,
        description="Swarm nodes the gateway may run on (runtime.kind: swarm); see "
        "`gateways[].placement`. Default: any node.",
    )

    @field_validator("trusted_ips")
    @classmethod
    def _ipv4_sources(
        cls, value: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        for network in value:
            if network.version == 6:
                raise ValueError(
                    f"{network} is IPv6: ibfleet's firewall rules filter IPv4 only, so an IPv6 "
                    "source could never be admitted; list IPv4 addresses or networks"
                )
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not an environment variable name")
        return value

    @property
    def effective_probe_client_id(self) -> int:
        return self.client_ids.end if self.probe_client_id is None else self.probe_client_id

    @field_validator("bind", mode="before")
    @classmethod
    def _bind_address(cls, value: object) -> object:
        # "[::]" and "[::1]" are how IPv6 addresses are often written next to a port.
        return addresses.parse(value) if isinstance(value, str) else value

    @property
    def is_public_bind(self) -> bool:
        """Whether the API port is published on every interface (0.0.0.0 or ::)."""
        return addresses.is_public(self.bind)

    @property
    def local_host(self) -> str:
        """The address the supervisor and its strategies on this host dial for the API port."""
        return addresses.local_host(self.bind)
