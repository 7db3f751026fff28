"""x86 MSI message formats: remappable compose/parse and the compatibility format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvmsi.reference.platform.fault import FaultReason
from pvmsi.reference.platform.msi_format import (
    INTERRUPT_WINDOW,
    CompatMessage,
    MessageFormatError,
    compose,
    compose_compat,
    is_interrupt_address,
    parse,
    parse_compat,
)


def test_compose_parse_round_trip_over_every_handle() -> None:
    for handle in range(1 << 16):
        address, data = compose(handle)
        assert address & 0xFFF00000 == INTERRUPT_WINDOW
        assert address & 0x18 == 0x18  # remappable format + SHV
        assert (address >> 5) & 0x7FFF == handle & 0x7FFF
        assert (address >> 2) & 1 == handle >> 15
        assert data == 0
        assert parse(address, data) == handle


def test_bit_layout_example() -> None:
    assert compose(0x8001) == (0xFEE00000 | 1 << 5 | 1 << 4 | 1 << 3 | 1 << 2, 0)
    assert compose(0x7FFF, 3) == (0xFEE00000 | 0x7FFF << 5 | 0x18, 3)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_subhandle_is_added_to_the_handle(handle: int, subhandle: int) -> None:
    assert parse(*compose(handle, subhandle)) == handle + subhandle


@given(st.sampled_from([1, 2, 4, 8, 16, 32]), st.integers(0, 2047))
def test_multi_message_data_selects_consecutive_entries(count: int, block: int) -> None:
    base = block * count
    address, data = compose(base)
    for i in range(count):
        assert parse(address, data | i) == base + i


def test_without_shv_data_is_ignored() -> None:
    address, _ = compose(0x1234)
    assert parse(address & ~0x8, 0x55) == 0x1234


@pytest.mark.parametrize(
    ("address", "data", "reason"),
    [
        (0xFEE01000, 0x41, FaultReason.COMPATIBILITY_FORMAT),
        (0xFED00000 | 0x18, 0, FaultReason.NOT_INTERRUPT_ADDRESS),
        ((1 << 32) | 0xFEE00018, 0, FaultReason.NOT_INTERRUPT_ADDRESS),
        (0xFEE00018, 0x10000, FaultReason.RESERVED_BITS),
        (0xFEE00018, 1 << 32, FaultReason.RESERVED_BITS),
    ],
)
def test_parse_rejects(address: int, data: int, reason: FaultReason) -> None:
    with pytest.raises(MessageFormatError) as info:
        parse(address, data)
    assert info.value.reason is reason


def test_compose_rejects_out_of_range() -> None:
    for bad in ((1 << 16, 0), (-1, 0), (0, 1 << 16)):
        with pytest.raises(ValueError, match="16-bit"):
            compose(*bad)


@given(st.integers(0, 255), st.integers(0, 255))
def test_compat_round_trip(apic_id: int, vector: int) -> None:
    address, data = compose_compat(apic_id, vector)
    assert address == 0xFEE00000 | apic_id << 12
    assert data == vector
    assert parse_compat(address, data) == CompatMessage(apic_id, vector)
    with pytest.raises(MessageFormatError):
        parse(address, data)


def test_parse_compat_rejects_remappable_and_odd_modes() -> None:
    assert parse_compat(*compose(5)) is None
    assert parse_compat(0xFEE00000 | 1 << 2, 0x40) is None  # logical destination mode
    assert parse_compat(0xFEE00000, 0x4040) is None  # level-triggered / other delivery mode
    assert parse_compat(0xFED00000, 0x40) is None
    assert not is_interrupt_address(0xFEF00000)
    assert is_interrupt_address(0xFEEFFFFC)
    with pytest.raises(ValueError, match="APIC"):
        compose_compat(256, 0x40)
