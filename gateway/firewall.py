"""Who may open a gateway's API port and IBC's command server: iptables rules the runtime owns.

Why iptables: in the gnzsnz image socat relays the API port (4003/4004) to the Gateway from
127.0.0.1 (``stable/scripts/run_socat.sh``: ``socat TCP-LISTEN:<port>,fork TCP:127.0.0.1:...``),
so every client looks local and IB's trusted-IP list admits everyone; IBC's command server
listens on every interface from IBC's start. Nothing inside the container can tell the
supervisor from anyone else, so the decision is made outside it, on the host, where the source
is still known:

- the fleet network is created with inter-container traffic off
  (``com.docker.network.bridge.enable_icc=false``): another container on it reaches no port of a
  gateway (Docker then also keeps ``bridge-nf-call-iptables`` on, so bridged traffic is filtered);
- a chain jumped from ``DOCKER-USER`` (forwarded traffic: other hosts, other containers) admits
  to 4003/4004/7462 of the fleet subnet only the supervisor's own container (when it runs in one)
  and each gateway's ``trusted_ips`` through that gateway's published port, and resets the rest;
- a chain jumped from ``OUTPUT`` (processes on the host) admits only the supervisor's uid and
  root (the engine's port proxy runs as root; root can rewrite these rules anyway), plus every
  local user for a gateway whose ``trusted_ips`` lists a loopback address, and resets the rest,
  whether they aim at a container address or at the published host port.

The rules are pure values here (:func:`restore_script`, :func:`jump_rules`); :class:`Iptables`
applies them atomically with ``iptables-restore --noflush`` and removes them by their comment.
:func:`isolation_limits` reads ``docker info`` for engines where host iptables cannot see the
containers' traffic (rootless Docker, Docker Desktop).
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "COMMENT_PREFIX",
    "GUARDED_PORTS",
    "FirewallError",
    "FleetGuard",
    "GuardedGateway",
    "Iptables",
    "Runner",
    "chain_names",
    "isolation_limits",
    "jump_rules",
    "restore_script",
    "subprocess_runner",
]

# gnzsnz's socat ports (live, paper) and IBC's command server.
GUARDED_PORTS = (4003, 4004, 7462)
COMMENT_PREFIX = "ibfleet fleet="
_PARENTS = ("DOCKER-USER", "OUTPUT")


class FirewallError(RuntimeError):
    """The rules could not be read or written; the message says which command and why."""


@dataclass(frozen=True, slots=True)
class GuardedGateway:
    """One gateway's published API port and the sources besides the supervisor it admits."""

    name: str
    host_ports: tuple[int, ...]
    container_port: int
    trusted: tuple[str, ...] = ()

    @property
    def trusts_local_users(self) -> bool:
        return any(ipaddress.ip_network(t, strict=False).is_loopback for t in self.trusted)

    @property
    def trusted_remote(self) -> tuple[str, ...]:
        return tuple(
            t
            for t in self.trusted
            if not ipaddress.ip_network(t, strict=False).is_loopback
            and ipaddress.ip_network(t, strict=False).version == 4
        )


@dataclass(frozen=True, slots=True)
class FleetGuard:
    """Everything the fleet's rules depend on."""

    fleet: str
    network: str
    subnets: tuple[str, ...]
    host_uids: tuple[int, ...]
    supervisor_sources: tuple[str, ...] = ()
    gateways: tuple[GuardedGateway, ...] = ()
    # Ports a fleet container offers its peers on the network (the simulator's broker link).
    peer_ports: tuple[int, ...] = field(default=())


def chain_names(fleet: str) -> tuple[str, str]:
    """(forward chain, output chain): short, fixed per fleet (iptables allows 28 characters)."""
    digest = hashlib.sha256(fleet.encode()).hexdigest()[:10]
    return f"IBFLEET-{digest}-F", f"IBFLEET-{digest}-O"


def _comment(guard_fleet: str, network: str) -> list[str]:
    return ["-m", "comment", "--comment", f"{COMMENT_PREFIX}{guard_fleet} network={network}"]


def jump_rules(fleet: str, network: str) -> list[tuple[str, list[str]]]:
    """(parent chain, rule) of the jumps into the fleet's chains; each goes first in its parent."""
    forward, output = chain_names(fleet)
    return [
        ("DOCKER-USER", [*_comment(fleet, network), "-j", forward]),
        ("OUTPUT", [*_comment(fleet, network), "-j", output]),
    ]


def _ports(ports: Sequence[int]) -> list[str]:
    return ["-m", "multiport", "--dports", ",".join(str(p) for p in ports)]


def _v4(subnets: Sequence[str]) -> list[str]:
    return [s for s in subnets if ipaddress.ip_network(s, strict=False).version == 4]


def forward_rules(guard: FleetGuard) -> list[list[str]]:
    """The forward chain: admit the supervisor, trusted sources and peer links, reset the rest."""
    rules: list[list[str]] = []
    reset = ["-j", "REJECT", "--reject-with", "tcp-reset"]
    for subnet in _v4(guard.subnets):
        dst = ["-d", subnet, "-p", "tcp"]
        for source in guard.supervisor_sources:
            rules.append(["-s", source, *dst, *_ports(GUARDED_PORTS), "-j", "ACCEPT"])
        for gateway in guard.gateways:
            for port in gateway.host_ports:
                for source in gateway.trusted_remote:
                    rules.append(
                        [
                            "-s",
                            source,
                            *dst,
                            "--dport",
                            str(gateway.container_port),
                            "-m",
                            "conntrack",
                            "--ctorigdstport",
                            str(port),
                            "-j",
                            "ACCEPT",
                        ]
                    )
        if guard.peer_ports:
            rules.append(["-s", subnet, *dst, *_ports(guard.peer_ports), "-j", "ACCEPT"])
        rules.append([*dst, *_ports(GUARDED_PORTS), *reset])
    return rules


def output_rules(guard: FleetGuard) -> list[list[str]]:
    """The output chain: the supervisor's uid and root pass, other local users are reset."""
    rules: list[list[str]] = []
    reset = ["-j", "REJECT", "--reject-with", "tcp-reset"]
    for uid in sorted(set(guard.host_uids)):
        rules.append(["-m", "owner", "--uid-owner", str(uid), "-j", "RETURN"])
    local = ["-m", "addrtype", "--dst-type", "LOCAL"]
    for gateway in guard.gateways:
        for port in gateway.host_ports:
            if gateway.trusts_local_users:
                rules.append(["-p", "tcp", "--dport", str(port), *local, "-j", "RETURN"])
            else:
                rules.append(["-p", "tcp", "--dport", str(port), *local, *reset])
    for subnet in _v4(guard.subnets):
        rules.append(["-d", subnet, "-p", "tcp", *_ports(GUARDED_PORTS), *reset])
    return rules


def restore_script(guard: FleetGuard) -> str:
    """``iptables-restore --noflush`` input that replaces both chains' contents in one commit."""
    forward, output = chain_names(guard.fleet)
    lines = ["*filter", f":{forward} - [0:0]", f":{output} - [0:0]"]
    for rule in forward_rules(guard):
        lines.append(" ".join([f"-A {forward}", *(_quote(a) for a in rule)]))
    for rule in output_rules(guard):
        lines.append(" ".join([f"-A {output}", *(_quote(a) for a in rule)]))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def isolation_limits(info: Mapping[str, object]) -> list[str]:
    """Why the host's iptables cannot enforce the isolation on this engine (``docker info``)."""
    problems: list[str] = []
    raw = info.get("SecurityOptions")
    options = [o for o in raw if isinstance(o, str)] if isinstance(raw, list) else []
    if any("rootless" in o for o in options):
        problems.append(
            "rootless Docker: the containers' traffic is filtered inside rootlesskit's namespace, "
            "which ibfleet's host iptables rules do not reach; any local user who can reach the "
            "published port reaches the gateway"
        )
    system = str(info.get("OperatingSystem") or "")
    if "Docker Desktop" in system:
        problems.append(
            "Docker Desktop: the engine runs in a VM, so ibfleet cannot install its iptables "
            "rules there; every local user can open the published API port"
        )
    return problems


class Runner(Protocol):
    """Runs one iptables program (``iptables``, ``iptables-restore``) with arguments."""

    def __call__(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        """(exit status, stdout, stderr)."""
        ...


def subprocess_runner(argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
    """The host's iptables, waiting for its lock (never more than 30 s)."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", f"{type(exc).__name__}: {exc}"
    return done.returncode, done.stdout, done.stderr.strip()


class Iptables:
    """Applies and removes a fleet's rules in the host's filter table. Idempotent."""

    def __init__(self, runner: Runner = subprocess_runner) -> None:
        self._run = runner

    def _must(self, argv: Sequence[str], stdin: str | None = None) -> None:
        code, _out, err = self._run(argv, stdin)
        if code != 0:
            raise FirewallError(f"{' '.join(argv[:3])}: exit {code}: {err[:300]}")

    def _ok(self, argv: Sequence[str]) -> bool:
        return self._run(argv)[0] == 0

    def problem(self) -> str | None:
        """Why this process cannot manage the rules here, or None: what ``apply`` would refuse."""
        code, _out, err = self._run(["iptables", "-w", "-S", "DOCKER-USER"])
        if code == 0:
            return None
        if "denied" in err.lower() or "must be root" in err.lower():
            return (
                f"iptables refused ({err[:200]}): ibfleet needs root or CAP_NET_ADMIN on the "
                "engine's host to manage the gateways' firewall rules"
            )
        return (
            "iptables has no DOCKER-USER chain: the engine does not manage iptables "
            "(iptables: false, rootless or not on this host), so ibfleet cannot isolate "
            f"the gateways ({err[:200]})"
        )

    def apply(self, guard: FleetGuard) -> None:
        """Replace the fleet's chains with ``guard``'s rules, then make sure both jumps exist."""
        problem = self.problem()
        if problem is not None:
            raise FirewallError(problem)
        self._must(["iptables-restore", "-w", "--noflush"], restore_script(guard))
        for parent, rule in jump_rules(guard.fleet, guard.network):
            if not self._ok(["iptables", "-w", "-C", parent, *rule]):
                self._must(["iptables", "-w", "-I", parent, "1", *rule])

    def present(self, fleet: str) -> tuple[str, ...]:
        """The fleet's chains that exist now (none when iptables cannot be read)."""
        return tuple(c for c in chain_names(fleet) if self._ok(["iptables", "-w", "-S", c]))

    def fleets(self) -> dict[str, str]:
        """Fleets with a jump in place: fleet -> network (read from the jumps' comments)."""
        found: dict[str, str] = {}
        for parent in _PARENTS:
            code, out, _err = self._run(["iptables", "-w", "-S", parent])
            if code != 0:
                continue
            for line in out.splitlines():
                if COMMENT_PREFIX not in line:
                    continue
                text = line.split(COMMENT_PREFIX, 1)[1].split('"', 1)[0]
                fleet, _, network = text.partition(" network=")
                found[fleet] = network
        return found

    def remove(self, fleet: str) -> None:
        """Delete every jump into the fleet's chains, then the chains; nothing there is fine."""
        forward, output = chain_names(fleet)
        for parent, chain in (("DOCKER-USER", forward), ("OUTPUT", output)):
            code, out, _err = self._run(["iptables", "-w", "-S", parent])
            for line in out.splitlines() if code == 0 else []:
                words = shlex.split(line)
                if words[:2] == ["-A", parent] and words[-2:] == ["-j", chain]:
                    self._must(["iptables", "-w", "-D", parent, *words[2:]])
        for chain in (forward, output):
            # Gone already (another remover got there first) is as good as deleted.
            if (
                self._ok(["iptables", "-w", "-F", chain])
                and not self._ok(["iptables", "-w", "-X", chain])
                and self._ok(["iptables", "-w", "-S", chain])
            ):
                raise FirewallError(f"iptables -X {chain}: the chain is still referenced")
