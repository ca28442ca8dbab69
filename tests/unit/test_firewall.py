"""The fleet's iptables rules as values, and the Iptables adapter against a recording runner."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway.firewall import (
    FirewallError,
    FleetGuard,
    GuardedGateway,
    Iptables,
    chain_names,
    forward_rules,
    isolation_limits,
    output_rules,
    restore_script,
)

GUARD = FleetGuard(
    fleet="prod",
    network="ibfleet-prod",
    subnets=("172.30.0.0/16",),
    host_uids=(0, 1000),
    supervisor_sources=("172.30.0.9",),
    gateways=(GuardedGateway("a", (4102,), 4004, ("10.1.0.0/16",)),),
    peer_ports=(7470,),
)


def test_forward_admits_the_supervisor_and_trusted_then_resets_the_rest() -> None:
    rules = [" ".join(r) for r in forward_rules(GUARD)]
    assert rules[0].startswith("-s 172.30.0.9 -d 172.30.0.0/16") and rules[0].endswith("ACCEPT")
    assert "-s 10.1.0.0/16" in rules[1] and "--ctorigdstport 4102" in rules[1]
    assert "--dports 7470" in rules[2]
    assert rules[-1].endswith("--dports 4003,4004,7462 -j REJECT --reject-with tcp-reset")


def test_output_passes_the_supervisor_uid_and_root_and_resets_other_users() -> None:
    rules = [" ".join(r) for r in output_rules(GUARD)]
    assert rules[:2] == [
        "-m owner --uid-owner 0 -j RETURN",
        "-m owner --uid-owner 1000 -j RETURN",
    ]
    assert "--dport 4102 -m addrtype --dst-type LOCAL -j REJECT" in rules[2]
    assert rules[3].startswith("-d 172.30.0.0/16")


def test_a_loopback_trusted_ip_admits_local_users_to_the_published_port_only() -> None:
    guard = FleetGuard(
        fleet="prod",
        network="n",
        subnets=("172.30.0.0/16",),
        host_uids=(0,),
        gateways=(GuardedGateway("a", (4102,), 4004, ("127.0.0.1/32",)),),
    )
    rules = [" ".join(r) for r in output_rules(guard)]
    assert "-p tcp --dport 4102 -m addrtype --dst-type LOCAL -j RETURN" in rules
    assert rules[-1].endswith("REJECT --reject-with tcp-reset")
    assert not any("127.0.0.1" in r for r in forward_rules(guard))


def test_restore_script_replaces_both_chains_in_one_commit() -> None:
    forward, output = chain_names("prod")
    text = restore_script(GUARD)
    assert text.startswith(f"*filter\n:{forward} - [0:0]\n:{output} - [0:0]\n")
    assert text.endswith("COMMIT\n")
    assert len(forward) <= 28 and chain_names("other") != (forward, output)


class Recorder:
    def __init__(self, listing: str = "") -> None:
        self.calls: list[list[str]] = []
        self.listing = listing
        self.present: set[str] = set()

    def __call__(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        if argv[2:3] == ["-C"]:
            return (0 if " ".join(argv[3:]) in self.present else 1), "", ""
        if argv[2:3] == ["-I"]:
            self.present.add(" ".join([argv[3], *argv[5:]]))
        if argv[2:3] == ["-D"]:
            key = " ".join(argv[3:])
            if key in self.present:
                self.present.discard(key)
                return 0, "", ""
            return 1, "", "no such rule"
        if argv[2:3] == ["-S"]:
            rows = [f"-A {r}" for r in sorted(self.present) if r.startswith(argv[3] + " ")]
            return 0, "\n".join(_quoted(r) for r in rows), ""
        return 0, self.listing, ""


def _quoted(row: str) -> str:
    head, sep, tail = row.partition("--comment ")
    if not sep:
        return row
    comment, _, rest = tail.partition(" -j ")
    return f'{head}--comment "{comment}" -j {rest}'


def test_apply_is_idempotent_and_remove_deletes_jumps_and_chains() -> None:
    runner = Recorder()
    firewall = Iptables(runner)
    firewall.apply(GUARD)
    firewall.apply(GUARD)
    inserts = [c for c in runner.calls if c[2:3] == ["-I"]]
    assert len(inserts) == 2  # one jump from DOCKER-USER, one from OUTPUT, never twice
    firewall.remove("prod")
    assert not runner.present
    forward, output = chain_names("prod")
    assert ["iptables", "-w", "-X", forward] in runner.calls
    assert ["iptables", "-w", "-X", output] in runner.calls


def test_isolation_limits_name_rootless_and_docker_desktop() -> None:
    assert isolation_limits({"SecurityOptions": ["name=seccomp,profile=default"]}) == []
    (rootless,) = isolation_limits({"SecurityOptions": ["name=rootless"]})
    assert "rootless" in rootless
    (desktop,) = isolation_limits({"OperatingSystem": "Docker Desktop"})
    assert "Docker Desktop" in desktop


def refusing(err: str) -> Recorder:
    class Refusing(Recorder):
        def __call__(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
            self.calls.append(list(argv))
            return 4, "", err

    return Refusing()


def test_without_root_the_problem_says_root_or_cap_net_admin_and_apply_writes_nothing() -> None:
    runner = refusing(
        "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: "
        "Permission denied (you must be root)"
    )
    firewall = Iptables(runner)
    assert "root or CAP_NET_ADMIN" in str(firewall.problem())
    with pytest.raises(FirewallError, match="root or CAP_NET_ADMIN"):
        firewall.apply(GUARD)
    assert all(c[0] == "iptables" and c[2] == "-S" for c in runner.calls)


def test_an_engine_without_iptables_management_is_named_as_such() -> None:
    firewall = Iptables(refusing("iptables: No chain/target/match by that name."))
    assert "no DOCKER-USER chain" in str(firewall.problem())
    assert Iptables(Recorder()).problem() is None
