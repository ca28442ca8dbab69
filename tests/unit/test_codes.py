"""IB code tables: TWS API codes and IBC exit codes stay in their own namespaces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import codes
from gateway.codes import ApiCode, CodeKind, FarmKind, FarmStatus, IbcExit


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (1100, CodeKind.CONNECTIVITY_LOST),
        (2110, CodeKind.CONNECTIVITY_LOST),
        (1101, CodeKind.CONNECTIVITY_RESTORED),
        (1102, CodeKind.CONNECTIVITY_RESTORED),
        (1300, CodeKind.RECONNECT_REQUIRED),
        (2103, CodeKind.FARM_BROKEN),
        (2105, CodeKind.FARM_BROKEN),
        (2157, CodeKind.FARM_BROKEN),
        (2104, CodeKind.FARM_OK),
        (2106, CodeKind.FARM_OK),
        (2158, CodeKind.FARM_OK),
        (2107, CodeKind.FARM_INACTIVE),
        (2108, CodeKind.FARM_INACTIVE),
        (326, CodeKind.CLIENT_ID_IN_USE),
        (502, CodeKind.NOT_CONNECTED),
        (504, CodeKind.NOT_CONNECTED),
        (100, CodeKind.PACING),
        (162, CodeKind.PACING),
        (354, CodeKind.MARKET_DATA_PERMISSION),
        (10167, CodeKind.MARKET_DATA_PERMISSION),
        (10197, CodeKind.MARKET_DATA_PERMISSION),
        (202, CodeKind.ORDER),
        (201, CodeKind.ORDER),
        (2109, CodeKind.WARNING),
        (2150, CodeKind.WARNING),
        (200, CodeKind.REQUEST_ERROR),
        (99999, CodeKind.REQUEST_ERROR),
    ],
)
def test_classify(code: int, kind: CodeKind) -> None:
    assert codes.classify(code) is kind


def test_enum_values_are_ib_numbers() -> None:
    assert ApiCode.CONNECTIVITY_LOST == 1100
    assert ApiCode.CLIENT_ID_IN_USE == 326
    assert ApiCode.COMPETING_LIVE_SESSION == 10197
    assert ApiCode(2158) is ApiCode.SECDEF_FARM_OK


def test_groups_do_not_overlap_where_meaning_differs() -> None:
    assert not codes.CONNECTIVITY_LOST & codes.CONNECTIVITY_RESTORED
    assert not codes.FARM_BROKEN & codes.FARM_OK
    assert not codes.FARM_BROKEN & codes.FARM_INACTIVE


def test_cancel_confirmation_and_farm_notices_are_warnings_not_errors() -> None:
    assert codes.is_warning(202)
    assert codes.is_warning(2104)
    assert codes.is_warning(1102)
    assert not codes.is_warning(1100)
    assert not codes.is_warning(326)


@pytest.mark.parametrize(
    ("code", "message", "kind", "status", "name"),
    [
        (
            2104,
            "Market data farm connection is OK:usfarm.nj",
            FarmKind.MARKET_DATA,
            FarmStatus.OK,
            "usfarm.nj",
        ),
        (
            2103,
            "Market data farm connection is broken:usfarm",
            FarmKind.MARKET_DATA,
            FarmStatus.BROKEN,
            "usfarm",
        ),
        (
            2106,
            "HMDS data farm connection is OK:ushmds",
            FarmKind.HISTORICAL,
            FarmStatus.OK,
            "ushmds",
        ),
        (
            2107,
            "HMDS data farm connection is inactive but should be available upon demand.ushmds",
            FarmKind.HISTORICAL,
            FarmStatus.INACTIVE,
            "ushmds",
        ),
        (
            2158,
            "Sec-def data farm connection is OK:secdefil",
            FarmKind.SECURITY_DEFINITION,
            FarmStatus.OK,
            "secdefil",
        ),
        (
            2157,
            "Sec-def data farm connection is broken",
            FarmKind.SECURITY_DEFINITION,
            FarmStatus.BROKEN,
            "",
        ),
    ],
)
def test_farm_of_reads_kind_status_and_name(
    code: int, message: str, kind: FarmKind, status: FarmStatus, name: str
) -> None:
    notice = codes.farm_of(code, message)
    assert notice == codes.FarmNotice(kind=kind, status=status, name=name)


def test_farm_of_ignores_other_codes() -> None:
    assert (
        codes.farm_of(1100, "Connectivity between IB and Trader Workstation has been lost.") is None
    )


@given(st.integers(), st.text())
def test_farm_of_and_classify_never_raise(code: int, message: str) -> None:
    codes.classify(code)
    notice = codes.farm_of(code, message)
    assert notice is None or code in codes.FARM_BROKEN | codes.FARM_OK | codes.FARM_INACTIVE


class TestIbcExit:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (87, IbcExit.SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT),
            (88, IbcExit.LOGIN_DIALOG_DISPLAY_TIMED_OUT),
            (1111, IbcExit.SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT),
            (1112, IbcExit.LOGIN_DIALOG_DISPLAY_TIMED_OUT),
            (76, IbcExit.UNHANDLED_EXCEPTION),
            (0, IbcExit.NORMAL),
            (137, None),
            (143, None),
            (1, None),
            (-1, None),
            (4000, None),
        ],
    )
    def test_exit_status_maps_back_to_ibc(self, status: int, expected: IbcExit | None) -> None:
        assert codes.ibc_exit_from_status(status) is expected

    def test_namespaces_never_mix(self) -> None:
        # Same numbers, different meanings: the enums are distinct types and never compare
        # as the same member.
        assert IbcExit.UNHANDLED_EXCEPTION.name != ApiCode.CONNECTIVITY_LOST.name
        assert not isinstance(IbcExit.UNHANDLED_EXCEPTION, ApiCode)
        assert codes.classify(IbcExit.SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT) is CodeKind.REQUEST_ERROR

    def test_shell_status_values_are_unique(self) -> None:
        statuses = [int(code) % 256 for code in IbcExit]
        assert len(statuses) == len(set(statuses))
