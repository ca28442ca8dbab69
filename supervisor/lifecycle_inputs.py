"""What the gateway's observers see, as lifecycle inputs: IBC log events, probe results and
container events, each mapped to the :mod:`supervisor.lifecycle` event it means (or None).

Pure: the controller (:mod:`supervisor.gateway_controller`) feeds what these return to the
lifecycle; nothing here decides anything.
"""

from __future__ import annotations

from datetime import timedelta

from gateway import authlog, codes
from gateway import probe as probe_mod
from gateway.runtime import EventKind, RuntimeEvent
from supervisor import lifecycle as lc


def from_auth_event(event: authlog.AuthEvent) -> lc.Event | None:
    """An IBC log event as a lifecycle input (None for lines that change nothing)."""
    match event:
        case authlog.LoginAttempt(number=number):
            return lc.LoginAttempt(number=number)
        case authlog.TwoFactorInitiated():
            return lc.TwoFactorInitiated()
        case authlog.TwoFactorTimedOut():
            return lc.TwoFactorTimedOut()
        case authlog.LoggedIn(configured=False):
            return lc.LoggedIn()
        case authlog.ExistingSessionDetected():
            return lc.ExistingSessionDetected()
        case authlog.LoginFailed(message=message):
            return lc.LoginFailed(message=message or "")
        case authlog.TooManyFailedAttempts():
            return lc.LockedOut(message="too many failed login attempts")
        case authlog.ExitStatus(status=status):
            return lc.IbcExitStatus(code=status)
        case authlog.Relaunch(kind=kind, status=status):
            return lc.IbcRelaunching(kind=kind, status=status)
        case authlog.RestartScheduled():
            return lc.RestartScheduled()
        case authlog.TwoFactorApproved(exit_in_seconds=seconds):
            return lc.TwoFactorApproved(exit_in=timedelta(seconds=seconds))
        case authlog.TwoFactorReloginScheduled():
            return lc.TwoFactorExpired(relogin=True)
        case authlog.TwoFactorExpired():
            return lc.TwoFactorExpired(relogin=False)
    # "Cold restart in progress" and the script's other lines are read by the follower into
    # the Relaunch that names the relaunch; on their own they decide nothing.
    return None


def from_probe_event(event: probe_mod.ProbeEvent, *, account: str) -> lc.Event | None:
    """A probe observation as a lifecycle input."""
    match event:
        case probe_mod.ProbeConnected():
            return lc.ApiConnected()
        case probe_mod.ProbeLinkUp():
            # A new session sees the link up: a loss an earlier session heard is over.
            return lc.IbLinkRestored(data_lost=False)
        case probe_mod.ProbeHeartbeat(rtt=rtt):
            return lc.HeartbeatOk(rtt=timedelta(seconds=rtt))
        case probe_mod.ProbeHeartbeatMissed():
            return lc.HeartbeatMissed()
        case probe_mod.ProbeDisconnected():
            return lc.ApiDisconnected()
        case probe_mod.ProbeClientIdInUse(client_id=client_id):
            return lc.ClientIdInUse(client_id=client_id)
        case probe_mod.ProbeAccountChecked(ok=False, detail=detail):
            return lc.AccountMismatch(expected=account, actual=detail)
        case probe_mod.ProbePermissionChecked(ok=ok, symbol=symbol, expected=exp, got=got):
            if ok:
                return lc.PermissionOk()
            return lc.PermissionMismatch(detail=f"{symbol}: expected {exp} data, got {got}")
        case probe_mod.ProbeApiCode(code=code, message=message):
            if code in codes.CONNECTIVITY_LOST:
                return lc.IbLinkLost()
            if code in codes.CONNECTIVITY_RESTORED:
                return lc.IbLinkRestored(data_lost=code == codes.ApiCode.RESTORED_DATA_LOST)
            farm = codes.farm_of(code, message)
            if farm is not None and code in codes.FARM_BROKEN:
                return lc.FarmBroken(farm=farm.name or farm.kind.value)
            if farm is not None and code in codes.FARM_OK:
                return lc.FarmOk(farm=farm.name or farm.kind.value)
    return None


def from_runtime_event(event: RuntimeEvent) -> lc.Event | None:
    match event.kind:
        case EventKind.START:
            return lc.ContainerStarted()
        case EventKind.DIE:
            return lc.ContainerDied(exit_code=event.exit_code or 0)
        case EventKind.OOM:
            return lc.ContainerOom()
        case EventKind.DESTROY:
            return lc.ContainerDestroyed()
    return None
