"""The real host behind :class:`supervisor.doctor.Host`: Docker, sockets, clock, disk, apprise."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway import firewall
from gateway.docker_replies import parse_docker_time_ns
from gateway.secret_refs import SecretError
from gateway.spec import COMMAND_SERVER_PORT, LABEL_FLEET
from supervisor import doctor, notify
from supervisor.alertpolicy import Severity
from supervisor.settings import FleetSettings

_CONNECT_TIMEOUT = 3.0
_COMMAND_TIMEOUT = 5.0


class RealHost:
    """Asks this machine; every failure becomes a value, never an exception."""

    def __init__(self, settings: FleetSettings | None, *, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ
        self._client: Any = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def engine(self) -> doctor.Engine:
        import docker

        endpoint = self._environ.get("DOCKER_HOST", "")
        try:
            client = docker.from_env(timeout=10, environment=dict(self._environ))
            client.ping()
            version = client.version()
            info = client.info()
        except Exception as exc:  # the SDK raises many kinds; each means "no engine"
            return doctor.Engine(error=_short(exc), endpoint=endpoint)
        self._client = client
        ns = parse_docker_time_ns(str(info.get("SystemTime") or ""))
        clock = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC) if ns is not None else None
        return doctor.Engine(
            version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            clock=clock,
            endpoint=endpoint,
            isolation_limits=tuple(firewall.isolation_limits(info)),
        )

    def image_present(self, image: str) -> bool | None:
        if self._client is None:
            return None
        import docker

        try:
            self._client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        except Exception:
            return None
        return True

    def port(self, host: str, port: int) -> doctor.PortUse:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # TIME_WAIT leftovers are no obstacle to a listener; only a live bind is.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return doctor.PortUse(in_use=True, container=self._publisher(port))
        return doctor.PortUse(in_use=False)

    def _publisher(self, port: int) -> str | None:
        if self._client is None:
            return None
        try:
            items = self._client.api.containers()
        except Exception:
            return None
        for item in items:
            for binding in item.get("Ports") or []:
                if binding.get("PublicPort") == port:
                    names = item.get("Names") or ["?"]
                    return str(names[0]).lstrip("/")
        return None

    def command_servers(self, fleet: str) -> dict[str, tuple[str, int]]:
        if self._client is None:
            return {}
        try:
            items = self._client.api.containers(filters={"label": f"{LABEL_FLEET}={fleet}"})
        except Exception:
            return {}
        out: dict[str, tuple[str, int]] = {}
        for item in items:
            labels = item.get("Labels") or {}
            name = labels.get("io.ibfleet.gateway")
            if not name:
                continue  # the simulator's broker has no command server
            networks = (item.get("NetworkSettings") or {}).get("Networks") or {}
            for endpoint in networks.values():
                address = str((endpoint or {}).get("IPAddress") or "")
                if address:
                    out[str(name)] = (address, COMMAND_SERVER_PORT)
                    break
        return out

    def connect(self, host: str, port: int) -> str | None:
        try:
            with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT):
                return None
        except OSError as exc:
            return exc.strerror or type(exc).__name__

    def time_sync(self) -> doctor.TimeSync:
        if shutil.which("timedatectl"):
            out = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
            if out in ("yes", "no"):
                return doctor.TimeSync(out == "yes", "timedatectl NTPSynchronized=" + out)
        if shutil.which("chronyc"):
            out = _run(["chronyc", "-n", "tracking"])
            for line in (out or "").splitlines():
                if line.startswith("Leap status"):
                    state = line.partition(":")[2].strip()
                    return doctor.TimeSync(state != "Not synchronised", "chrony: " + state)
        return doctor.TimeSync(None)

    def free_bytes(self, directory: Path) -> int | None:
        try:
            return shutil.disk_usage(directory).free
        except OSError:
            return None

    def writable(self, journal: Path) -> str | None:
        directory = journal.parent
        if not directory.is_dir():
            return f"directory {directory} does not exist"
        if journal.exists():
            return None if os.access(journal, os.R_OK | os.W_OK) else "not writable by this user"
        try:
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".ibfleet-doctor-"):
                return None
        except OSError as exc:
            return f"cannot create files in {directory}: {exc.strerror}"

    def _sender(self, index: int) -> notify.Sender:
        assert self._settings is not None
        route = self._settings.alerts.routes[index]
        urls = [u.resolve(environ=self._environ).get_secret_value() for u in route.urls]
        return notify.make_sender(route=f"routes[{index}]", urls=urls, timeout=20)

    def route_problem(self, index: int) -> str | None:
        try:
            self._sender(index)
        except (SecretError, notify.NotifyConfigError) as exc:
            return str(exc)
        return None

    def send_test_alert(self, index: int) -> doctor.Alert:
        try:
            result = self._sender(index).send(
                title="ibfleet doctor: test notification",
                body="A test from `ibfleet doctor --send-test-alert`; alerts reach this route.",
                severity=Severity.INFO,
                resolved=False,
            )
        except Exception as exc:  # a sender may raise; report it as the route's failure
            return doctor.Alert(ok=False, error=_short(exc))
        return doctor.Alert(ok=result.ok, error=result.error)


def _run(argv: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
        )
        return done.stdout.strip()
    return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
