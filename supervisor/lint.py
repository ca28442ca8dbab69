"""Cross-field checks of a validated fleet: the mistakes that each field alone cannot show.

Pure: the environment and file existence come in as arguments, so ``check`` and the run-time
loader share these rules (a missing secret is a warning for ``check`` and an error at run time).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
import typing
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pydantic

from gateway import ibc_ini
from gateway.config import GatewayConfig, TradingMode
from gateway.secret_refs import SecretError, SecretRef, read_text_file
from gateway.time_fields import WeeklyTime
from supervisor import lint_swarm
from supervisor.settings import (
    ConfigProblem,
    FleetSettings,
    LoadedFleet,
    Location,
    RuntimeKind,
    format_path,
)

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
#: IB's weekly re-authentication window opens on Sunday at 01:00 New York time.
WEEKLY_REAUTH_OPENS = dt.time(1, 0)


def lint(
    loaded: LoadedFleet,
    *,
    environ: Mapping[str, str],
    file_exists: Callable[[Path], bool],
    missing_secret_severity: str = "warning",  # noqa: S107 - a severity, not a secret
    read_file: Callable[[Path], str] | None = None,
    url_problem: Callable[[str], str | None] | None = None,
    engine_limits: Callable[[], Sequence[str] | None] | None = None,
) -> list[ConfigProblem]:
    """Every cross-field problem of the fleet, in file order.

    ``engine_limits`` says why the Docker engine cannot enforce the fleet's network isolation
    (``gateway.firewall.isolation_limits`` of its ``docker info``; None when no engine answers);
    it is asked only for a Docker fleet, and without it the engine is not asked.

    ``url_problem`` says why an alert URL cannot be used (``supervisor.alerturls`` asks
    apprise); without it alert URLs are not checked.

    ``read_file`` reads ``{file: PATH}`` secrets so that a username or password IBC cannot pass
    on is found in files too; without it only literal and environment secrets are checked.
    """
    out = _Collector(loaded.locations)
    settings = loaded.settings
    gateways = settings.gateways
    by_name: dict[str, GatewayConfig] = {}
    # Items and sections set aside for a structural error are reported there, once; the
    # checks below must not also report what follows from their absence.
    set_aside_gateways = set(_set_aside_names(loaded, "gateways"))
    given = set(loaded.raw) - settings.model_fields_set if loaded.partial else set()

    _duplicates(out, "gateways", _all_names(loaded, "gateways"), "gateway name")
    _duplicates(out, "strategies", _all_names(loaded, "strategies"), "strategy name")
    for gw in gateways:
        by_name.setdefault(gw.name, gw)
    known = sorted(set(by_name) | set_aside_gateways)

    # IB allows one session per username: two gateways with one username log each other out.
    gw_at = list(zip(loaded.gateway_positions, gateways, strict=True))
    seen_users: dict[str, str] = {}
    for i, gw in gw_at:
        key = _secret_identity(gw.username, environ)
        if key in seen_users:
            out.error(
                ("gateways", i, "username"),
                f"gateway {gw.name!r} uses the same username as {seen_users[key]!r}",
                "give each gateway its own IB username; IB allows one session per username, so the "
                "two would log each other out",
            )
        else:
            seen_users[key] = gw.name

    ports: dict[int, tuple[str | int, ...]] = {}
    for i, gw in gw_at:
        path: tuple[str | int, ...] = ("gateways", i, "api_port")
        if gw.api_port in ports:
            out.error(
                path,
                f"host port {gw.api_port} is already used by {format_path(ports[gw.api_port])}",
                "give every gateway its own api_port",
            )
        else:
            ports[gw.api_port] = path
    if settings.api.port in ports and "api" not in given:
        out.error(
            ("api", "listen"),
            f"port {settings.api.port} is already used by {format_path(ports[settings.api.port])}",
            "move api.listen to a port no gateway publishes",
        )

    accounts: dict[str, tuple[str, TradingMode]] = {}
    for i, gw in gw_at:
        if gw.is_public_bind and not gw.allow_public_bind:
            out.error(
                ("gateways", i, "bind"),
                f"the API port would be published on {gw.bind} (every interface)",
                "bind to 127.0.0.1 or a private interface, or set allow_public_bind: true",
            )
        if gw.bind.version == 6 and settings.runtime.kind == "docker":
            out.error(
                ("gateways", i, "bind"),
                f"the API port would be published on the IPv6 address {gw.bind}, which ibfleet's "
                "firewall rules (IPv4) do not filter: every local user and remote source would "
                "reach the gateway",
                "bind to an IPv4 address: 127.0.0.1, a private interface, or 0.0.0.0 with "
                "allow_public_bind: true",
            )
        if gw.mode is TradingMode.LIVE and not gw.allow_live:
            out.error(
                ("gateways", i, "mode"),
                f"gateway {gw.name!r} is live but allow_live is not true",
                "set allow_live: true to confirm that this gateway trades real money",
            )
        paper_id = gw.account.startswith("D")
        if gw.mode is TradingMode.PAPER and not paper_id:
            out.error(
                ("gateways", i, "account"),
                f"{gw.account} is not a paper account id (paper ids start with D)",
                "use the DU... account of the paper login, or set mode: live",
            )
        if gw.mode is TradingMode.LIVE and paper_id:
            out.error(
                ("gateways", i, "account"),
                f"{gw.account} is a paper account id but the gateway is live",
                "set mode: paper, or use the live account id (U...)",
            )
        earlier = accounts.get(gw.account)
        if earlier is not None and earlier[1] is not gw.mode:
            out.error(
                ("gateways", i, "account"),
                f"account {gw.account} is used by a {earlier[1]} gateway "
                f"({earlier[0]!r}) and a {gw.mode} gateway",
                "set each gateway's account to its own login's id "
                "(paper ids start with D, live with U)",
            )
        accounts.setdefault(gw.account, (gw.name, gw.mode))
        probe = gw.effective_probe_client_id
        if probe not in gw.client_ids:
            out.error(
                ("gateways", i, "probe_client_id"),
                f"probe client id {probe} is outside client_ids "
                f"{gw.client_ids.start}-{gw.client_ids.end}",
                "pick an id inside the gateway's client id range",
            )
        if gw.restart.weekly_cold is not None:
            found = weekly_cold_problem(gw.restart.weekly_cold, settings.tz)
            if found is not None:
                problem, hint = found
                out.error(("gateways", i, "restart", "weekly_cold"), problem, hint)
        if gw.env:
            for key in gw.env:
                if any(word in key.upper() for word in ("PASSWORD", "SECRET", "TOKEN")):
                    out.warning(
                        ("gateways", i, "env", key),
                        f"{key} looks like a secret in plain container environment",
                        "put credentials in username/password ({env: ...} or {file: ...}), "
                        "or rename the variable if it holds no secret",
                    )

    sim = settings.simulator
    if (
        settings.runtime.kind == "in-process"
        and not sim.enabled
        and not given & {"runtime", "simulator"}
    ):
        out.error(
            ("runtime", "kind"),
            "runtime kind in-process runs simulated gateways only",
            "set simulator.enabled: true, or runtime.kind: docker",
        )
    if sim.enabled:
        for i, name in enumerate(sim.twofa_gateways):
            if name not in by_name and name not in set_aside_gateways:
                out.error(
                    ("simulator", "twofa_gateways", i),
                    f"unknown gateway {name!r}",
                    _name_a_known_gateway(name, known),
                )
        if sim.control_port in ports or sim.control_port == settings.api.port:
            out.error(
                ("simulator", "control_port"),
                f"port {sim.control_port} is already used",
                "give the simulator's control API a port of its own",
            )

    _secrets(out, loaded, environ, file_exists, missing_secret_severity)
    _credentials(out, loaded, environ, file_exists, read_file)
    _strategies(out, loaded, by_name, set_aside_gateways)
    lint_swarm.swarm_problems(loaded, by_name, out.warning, out.error)
    if not settings.api.is_loopback and settings.api.token is None and "api" not in given:
        out.error(
            ("api", "token"),
            f"the API listens on {settings.api.host} without a token",
            "set api.token: {env: IBFLEET_API_TOKEN}, or listen on 127.0.0.1",
        )
    if not settings.api.is_loopback:
        out.warning(
            ("api", "listen"),
            f"the API listens on {settings.api.host}: every GET (health, gateways, events, "
            "metrics) is readable by anyone who reaches it, and the bearer token of the POSTs "
            "travels in clear text",
            "listen on 127.0.0.1, or put a TLS-terminating proxy in front and firewall the port",
        )
    if url_problem is not None:
        _alert_urls(out, loaded, environ, file_exists, read_file, url_problem)
    if engine_limits is not None and settings.runtime.kind is RuntimeKind.DOCKER:
        for limit in engine_limits() or ():
            out.warning(
                ("runtime",),
                f"network isolation cannot be enforced on this Docker engine: {limit}",
                "run the fleet on a rootful Docker engine on a Linux host, where ibfleet installs "
                "its iptables rules; a gateway is created only once its rules are installed",
            )
    return out.problems


def _alert_urls(
    out: _Collector,
    loaded: LoadedFleet,
    environ: Mapping[str, str],
    file_exists: Callable[[Path], bool],
    read_file: Callable[[Path], str] | None,
    url_problem: Callable[[str], str | None],
) -> None:
    """Each alert URL apprise would refuse at ``run`` (the URL itself carries credentials)."""
    for r, route in enumerate(loaded.settings.alerts.routes):
        for u, ref in enumerate(route.urls):
            if ref.file is not None and (read_file is None or not file_exists(ref.file)):
                continue
            if ref.env is not None and not environ.get(ref.env):
                continue  # reported as missing
            try:
                url = ref.resolve(environ=environ, read_file=read_file or read_text_file)
            except SecretError as exc:
                out.error(("alerts", "routes", r, "urls", u), str(exc), "fix the secret file")
                continue
            problem = url_problem(url.get_secret_value().strip())
            if problem is not None:
                out.error(
                    ("alerts", "routes", r, "urls", u),
                    f"alert URL #{u + 1} of route {r} ({ref.describe()}) {problem}",
                    "check the URL's form in the apprise documentation (slack://, mailto://, "
                    "json://, ...)",
                )


_SUNDAY = 6  # datetime.weekday()
#: A winter and a summer week: a rule that holds in both holds across daylight saving.
_SAMPLE_MONDAYS = (dt.date(2026, 1, 5), dt.date(2026, 7, 6))


def _before_reauth(clock: dt.time, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """The New York time of Sunday ``clock`` in ``tz`` when it is not Sunday after 01:00 there."""
    for monday in _SAMPLE_MONDAYS:
        local = dt.datetime.combine(monday + dt.timedelta(days=_SUNDAY), clock, tzinfo=tz)
        ny = local.astimezone(NEW_YORK)
        if ny.weekday() != _SUNDAY or ny.time() < WEEKLY_REAUTH_OPENS:
            return ny
    return None


def _suggest_weekly_cold(tz: zoneinfo.ZoneInfo) -> str:
    """An example that passes both rules in ``tz`` with an hour to spare."""
    for half_hours in range(2, 48):  # from 01:00, so the hour before is the same Sunday
        clock = dt.time(half_hours // 2, 30 * (half_hours % 2))
        earlier = dt.time(clock.hour - 1, clock.minute)
        if _before_reauth(clock, tz) is None and _before_reauth(earlier, tz) is None:
            return f"Sun {clock:%H:%M}"
    return "a Sunday time that is after 01:00 New York time in winter and summer"


def weekly_cold_problem(when: WeeklyTime, tz: zoneinfo.ZoneInfo) -> tuple[str, str] | None:
    """What is wrong with a weekly cold restart time and how to fix it, or None.

    Two rules, both about the fleet's timezone, which is the gateway container's TZ: IBC's
    ColdRestartTime is an ``HH:MM`` that IBC always applies on Sunday in the JVM's zone
    (``IbcTws.getColdRestartTime``), so the day must be Sunday there; and the restart must
    come after IB's weekly re-authentication opens, Sunday 01:00 New York time, in winter and
    summer alike, or the full login it forces would not count for the week.
    """
    if when.weekday != _SUNDAY:
        day = dt.date(2026, 1, 5) + dt.timedelta(days=when.weekday)
        return (
            f"weekly cold restart {when} is a {day:%A} in {tz.key}; IBC cold-restarts only on "
            f"Sunday in the gateway's timezone (the fleet's), so it would restart on Sunday "
            f"{when.time:%H:%M} instead",
            f"write 'Sun HH:MM' on the {tz.key} clock, after 01:00 New York time, e.g. "
            f"{_suggest_weekly_cold(tz)}",
        )
    ny = _before_reauth(when.time, tz)
    if ny is not None:
        return (
            f"weekly cold restart {when} ({tz.key}) is {ny:%a %H:%M} in New York; it must be "
            "on Sunday after 01:00 New York time",
            "IB's weekly re-authentication opens on Sunday at 01:00 New York time; e.g. "
            f"{_suggest_weekly_cold(tz)} in {tz.key}",
        )
    return None


def _secrets(
    out: _Collector,
    loaded: LoadedFleet,
    environ: Mapping[str, str],
    file_exists: Callable[[Path], bool],
    severity: str,
) -> None:
    refs: list[tuple[tuple[str | int, ...], SecretRef]] = []
    settings = loaded.settings
    for i, gw in zip(loaded.gateway_positions, settings.gateways, strict=True):
        refs.append((("gateways", i, "username"), gw.username))
        refs.append((("gateways", i, "password"), gw.password))
    for r, route in enumerate(settings.alerts.routes):
        for u, url in enumerate(route.urls):
            refs.append((("alerts", "routes", r, "urls", u), url))
    if settings.api.token is not None:
        refs.append((("api", "token"), settings.api.token))
    for path, ref in refs:
        if ref.env is not None and not environ.get(ref.env):
            out.add(
                severity,
                path,
                f"environment variable {ref.env} is not set",
                "export it before `ibfleet run`",
            )
        elif ref.file is not None and not file_exists(ref.file):
            out.add(severity, path, f"secret file {ref.file} does not exist", "create it (0600)")
        elif ref.is_literal and path[0] == "gateways":
            out.warning(
                path,
                "an inline secret sits in the fleet file",
                "use {env: NAME} or {file: PATH} so the file can be shared safely",
            )


def _credentials(
    out: _Collector,
    loaded: LoadedFleet,
    environ: Mapping[str, str],
    file_exists: Callable[[Path], bool],
    read_file: Callable[[Path], str] | None,
) -> None:
    """A username or password that config.ini cannot carry to IB's login (never shown)."""
    for i, gw in zip(loaded.gateway_positions, loaded.settings.gateways, strict=True):
        for field, ref in (("username", gw.username), ("password", gw.password)):
            if ref.file is not None and (read_file is None or not file_exists(ref.file)):
                continue
            if ref.env is not None and not environ.get(ref.env):
                continue  # reported as missing
            try:
                value = ref.resolve(environ=environ, read_file=read_file or read_text_file)
            except SecretError:
                continue  # unreadable: the run-time loader reports it
            problem = ibc_ini.credential_problem(value.get_secret_value())
            if problem is not None:
                out.error(
                    ("gateways", i, field),
                    f"the {field} of gateway {gw.name!r} ({ref.describe()}) {problem}",
                    "IBC reads the credentials from config.ini and logs in with them as they "
                    "are there; correct the secret's value",
                )


def _strategies(
    out: _Collector,
    loaded: LoadedFleet,
    gateways: dict[str, GatewayConfig],
    set_aside: set[str],
) -> None:
    ids_on_gateway: dict[tuple[str, int], str] = {}
    known = sorted(set(gateways) | set_aside)
    for s, strat in zip(loaded.strategy_positions, loaded.settings.strategies, strict=True):
        for g, gw_name in enumerate(strat.gateways):
            gw = gateways.get(gw_name)
            path: tuple[str | int, ...] = ("strategies", s, "gateways", g)
            if gw is None:
                if gw_name in set_aside:
                    # Known but broken: its own error says what to fix; the checks against
                    # its settings wait until it loads.
                    continue
                out.error(
                    path,
                    f"strategy {strat.name!r} names unknown gateway {gw_name!r}",
                    _name_a_known_gateway(gw_name, known),
                )
                continue
            if g > 0:
                # Failover gateways lease a fresh id from their own range; the configured
                # client id applies to the primary only.
                if gw.read_only and not strat.read_only:
                    out.error(
                        path,
                        f"strategy {strat.name!r} places orders but failover gateway "
                        f"{gw.name!r} is read-only",
                        "set read_only: true on the strategy, or read_only: false on the gateway",
                    )
                continue
            if strat.client_id not in gw.client_ids:
                out.error(
                    ("strategies", s, "client_id"),
                    f"client id {strat.client_id} is outside gateway {gw.name!r}'s range "
                    f"{gw.client_ids.start}-{gw.client_ids.end}",
                    "pick an id from the gateway's client_ids",
                )
            elif strat.client_id == gw.effective_probe_client_id:
                out.error(
                    ("strategies", s, "client_id"),
                    f"client id {strat.client_id} is gateway {gw.name!r}'s probe client id",
                    "the supervisor's health probe holds that id; pick another",
                )
            other = ids_on_gateway.get((gw.name, strat.client_id))
            if other is not None and other != strat.name:
                out.error(
                    ("strategies", s, "client_id"),
                    f"strategies {other!r} and {strat.name!r} both use client id "
                    f"{strat.client_id} on gateway {gw.name!r}",
                    "give one of them another client_id; IB refuses a second session with the same "
                    "client id (error 326)",
                )
            ids_on_gateway.setdefault((gw.name, strat.client_id), strat.name)
            if gw.read_only and not strat.read_only:
                out.error(
                    path,
                    f"strategy {strat.name!r} places orders but gateway {gw.name!r} is read-only",
                    "set read_only: true on the strategy, or read_only: false on the gateway",
                )


def _duplicates(out: _Collector, section: str, names: Iterable[tuple[int, str]], what: str) -> None:
    first: dict[str, int] = {}
    for i, name in names:
        if name in first:
            out.error(
                (section, i, "name"),
                f"duplicate {what} {name!r} (first at {section}[{first[name]}])",
                f"rename one of them; names must be unique among {section}",
            )
        else:
            first[name] = i


def _all_names(loaded: LoadedFleet, section: str) -> list[tuple[int, str]]:
    """Every item's position and name in the file, the ones set aside for errors included."""
    items = loaded.raw.get(section)
    if not isinstance(items, list):
        return []
    return [
        (i, item["name"])
        for i, item in enumerate(items)
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def _set_aside_names(loaded: LoadedFleet, section: str) -> list[str]:
    """Names of the items of ``section`` that failed validation (a partial fleet lacks them)."""
    if not loaded.partial:
        return []
    kept = set(loaded.gateway_positions if section == "gateways" else loaded.strategy_positions)
    return [name for i, name in _all_names(loaded, section) if i not in kept]


def _name_a_known_gateway(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean {close[0]!r}? (known gateways: {', '.join(known)})"
    if known:
        return f"use one of the gateways defined under gateways: {', '.join(known)}"
    return f"define a gateway named {name!r} under gateways:"


def _secret_identity(ref: SecretRef, environ: Mapping[str, str]) -> str:
    """Compare usernames by value when it is known, else by where they come from."""
    if ref.literal is not None:
        return "value:" + ref.literal.get_secret_value()
    if ref.env is not None and environ.get(ref.env):
        return "value:" + environ[ref.env]
    return "ref:" + ref.describe()


class _Collector:
    def __init__(self, locations: Mapping[str, Location]) -> None:
        self._locations = locations
        self.problems: list[ConfigProblem] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, severity: str, path: tuple[str | int, ...], message: str, hint: str) -> None:
        rendered = format_path(path)
        if (rendered, message) in self._seen:
            return
        self._seen.add((rendered, message))
        self.problems.append(
            ConfigProblem(severity, rendered, message, hint, location=self._locate(path))
        )

    def error(self, path: tuple[str | int, ...], message: str, hint: str) -> None:
        self.add("error", path, message, hint)

    def warning(self, path: tuple[str | int, ...], message: str, hint: str) -> None:
        self.add("warning", path, message, hint)

    def _locate(self, path: tuple[str | int, ...]) -> Location:
        for cut in range(len(path), -1, -1):
            found = self._locations.get(format_path(path[:cut]))
            if found is not None:
                return found
        return Location()


def ordered(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Problems in file order (environment overrides and unlocated ones last)."""

    def key(p: ConfigProblem) -> tuple[int, int, int]:
        loc = p.location
        return (0 if loc.line is not None else 1, loc.line or 0, loc.column or 0)

    return sorted(problems, key=key)


def with_hints(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Structural problems with a hint that says what to write, where the loader gave none.

    An unknown key is compared with the keys allowed at its place, so a typo is answered with
    the key that was meant; a missing key or a wrong value says what to add or to write.
    """
    out = []
    for problem in problems:
        hint = problem.hint
        parts = _split_path(problem.path)
        leaf = parts[-1] if parts and isinstance(parts[-1], str) else None
        if problem.message.startswith("unknown key") and leaf is not None:
            allowed = _keys_at(parts[:-1])
            close = difflib.get_close_matches(leaf, allowed, n=1, cutoff=0.6)
            if close:
                hint = f"did you mean {close[0]!r}? (rename {leaf!r} to {close[0]!r})"
            elif allowed:
                hint = f"remove {leaf!r}; the keys allowed here are: {', '.join(allowed)}"
        elif problem.message == "is required" and leaf is not None:
            where = format_path(parts[:-1])
            hint = f"add '{leaf}:' to {where} (see the fleet file reference in the README)"
        elif not hint and problem.message.startswith("Input should be") and leaf is not None:
            wanted = problem.message.removeprefix("Input should be ")
            hint = f"change {leaf} to a value that is {wanted}"
        out.append(dataclasses.replace(problem, hint=hint))
    return out


def _split_path(path: str) -> tuple[str | int, ...]:
    """``gateways[1].restart.daily`` -> ``("gateways", 1, "restart", "daily")``."""
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


def _keys_at(path: tuple[str | int, ...]) -> list[str]:
    """The keys a mapping at ``path`` of the fleet file accepts, or [] when it is no model."""
    model: object = FleetSettings
    for part in path:
        if isinstance(part, int):
            continue  # list items: the list's element model is already unwrapped
        fields = getattr(model, "model_fields", None)
        if not isinstance(fields, dict) or part not in fields:
            return []
        model = _model_of(fields[part].annotation)
        if model is None:
            return []
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if isinstance(fields, dict) else []


def _model_of(annotation: object) -> object | None:
    """The pydantic model inside ``X``, ``X | None`` or ``list[X]``, or None."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
