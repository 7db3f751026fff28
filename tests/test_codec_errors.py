"""The strict decoder and encoder reject bad input naming the field (path and byte offset)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    LAYOUTS,
    BadInput,
    enum_inputs,
    example_value,
    field_paths,
    flag_mask,
    flags_inputs,
    int_range,
    mutated_for,
    out_of_range_values,
    per_format,
    reserved_inputs,
    set_path,
    short_inputs,
    struct_of,
    without_path,
)

from pvmsi.spec.codec import DecodeError, EncodeError, decode, encode
from pvmsi.spec.layout import FormatLayout

by_layout = pytest.mark.parametrize("lay", LAYOUTS, ids=[lay.name for lay in LAYOUTS])


def _cases(kind: Any) -> list[Any]:
    return [pytest.param(case, id=case.id) for lay in LAYOUTS for case in kind(lay)]


RESERVED = _cases(reserved_inputs)
ENUMS = _cases(enum_inputs)
FLAGS = _cases(flags_inputs)
SHORT = _cases(short_inputs)


def _expect(case: BadInput, reason_part: str) -> DecodeError:
    fmt = struct_of(next(lay for lay in LAYOUTS if lay.name == case.fmt))
    with pytest.raises(DecodeError) as exc:
        decode(fmt, case.data)
    err = exc.value
    assert (err.fmt, err.path, err.offset) == (case.fmt, case.path, case.offset), str(err)
    assert reason_part in err.reason
    assert case.path in str(err)
    assert f"offset {case.offset}" in str(err)
    return err


def test_every_reserved_field_has_a_case() -> None:
    ids = {c.values[0].fmt + "." + c.values[0].path for c in RESERVED}
    expected = {f"{lay.name}.{leaf.path}" for lay in LAYOUTS for leaf in lay.leaves() if leaf.field.reserved}
    assert ids == expected
    assert len(expected) >= 14


def test_every_enum_and_flags_field_has_a_case() -> None:
    enums = {f"{lay.name}.{leaf.path}" for lay in LAYOUTS for leaf in lay.leaves() if leaf.field.enum}
    flags = {f"{lay.name}.{leaf.path}" for lay in LAYOUTS for leaf in lay.leaves() if leaf.field.flags}
    assert enums
    assert flags
    assert enums == {c.values[0].fmt + "." + c.values[0].path for c in ENUMS}
    assert flags == {c.values[0].fmt + "." + c.values[0].path for c in FLAGS}


@pytest.mark.parametrize("case", RESERVED)
def test_reserved_nonzero_rejected(case: BadInput) -> None:
    _expect(case, "must be zero")


@pytest.mark.parametrize("case", ENUMS)
def test_undefined_enum_rejected(case: BadInput) -> None:
    _expect(case, "is not a defined")


@pytest.mark.parametrize("case", FLAGS)
def test_undefined_flag_bit_rejected(case: BadInput) -> None:
    _expect(case, "bits")


@pytest.mark.parametrize("case", SHORT)
def test_short_buffer_rejected(case: BadInput) -> None:
    lay = next(lay for lay in LAYOUTS if lay.name == case.fmt)
    _expect(case, f"buffer is {len(case.data)} bytes, the format needs {lay.size}")


@by_layout
@pytest.mark.parametrize("extra", [1, 7, 8, 4096])
def test_trailing_bytes_rejected_when_exact(lay: FormatLayout, extra: int) -> None:
    fmt = struct_of(lay)
    data = encode(fmt, example_value(lay))
    with pytest.raises(DecodeError) as exc:
        decode(fmt, data + b"\xff" * extra)
    assert (exc.value.path, exc.value.offset) == ("<end>", lay.size)
    assert f"{extra} trailing bytes" in exc.value.reason
    assert decode(fmt, data + b"\xff" * extra, exact=False) == decode(fmt, data)


@by_layout
def test_decode_accepts_bytearray_and_memoryview(lay: FormatLayout) -> None:
    fmt = struct_of(lay)
    data = encode(fmt, example_value(lay))
    assert decode(fmt, bytearray(data)) == decode(fmt, memoryview(data)) == decode(fmt, data)


@by_layout
@per_format
@given(data=st.data())
def test_arbitrary_bytes_decode_or_raise_decode_error(lay: FormatLayout, data: st.DataObject) -> None:
    fmt = struct_of(lay)
    raw = data.draw(mutated_for(lay))
    error: DecodeError | None = None
    try:
        value = decode(fmt, raw)
    except DecodeError as err:
        error = err
    if error is None:
        assert encode(fmt, value) == raw
    else:
        leaf = next(lf for lf in lay.leaves() if lf.path == error.path)
        assert error.offset == leaf.offset
        assert error.fmt == lay.name


@by_layout
@settings(max_examples=40)
@given(data=st.data())
def test_arbitrary_lengths_decode_or_raise_decode_error(lay: FormatLayout, data: st.DataObject) -> None:
    fmt = struct_of(lay)
    raw = data.draw(st.binary(max_size=2 * lay.size + 1))
    exact = data.draw(st.booleans())
    try:
        decode(fmt, raw, exact=exact)
    except DecodeError as err:
        error: DecodeError | None = err
    else:
        error = None
    if len(raw) < lay.size or (exact and len(raw) > lay.size):
        assert error is not None
    if error is not None:
        assert error.fmt == lay.name


# -- encoding -----------------------------------------------------------------------------------------------------

OUT_OF_RANGE = [
    pytest.param(lay, path, v, id=case_id) for lay in LAYOUTS for case_id, path, v in out_of_range_values(lay)
]


@pytest.mark.parametrize(("lay", "path", "value"), OUT_OF_RANGE)
def test_encode_out_of_range_names_the_field(lay: FormatLayout, path: str, value: int) -> None:
    with pytest.raises(EncodeError) as exc:
        encode(struct_of(lay), set_path(example_value(lay), path, value))
    assert exc.value.fmt == lay.name
    assert exc.value.path == path
    assert "out of range" in exc.value.reason


def _leaves(pred: Any) -> list[Any]:
    return [
        pytest.param(lay, leaf.path, id=f"{lay.name}.{leaf.path}")
        for lay in LAYOUTS
        for leaf in lay.leaves()
        if pred(leaf)
    ]


@pytest.mark.parametrize(
    ("lay", "path"),
    [
        pytest.param(lay, path, id=f"{lay.name}.{path}")
        for lay in LAYOUTS
        for path in field_paths(lay, lambda leaf: not leaf.field.reserved)
    ],
)
def test_encode_missing_field_names_the_field(lay: FormatLayout, path: str) -> None:
    with pytest.raises(EncodeError) as exc:
        encode(struct_of(lay), without_path(example_value(lay), path))
    assert (exc.value.fmt, exc.value.path) == (lay.name, path)


@pytest.mark.parametrize(("lay", "path"), _leaves(lambda leaf: not leaf.field.reserved))
@pytest.mark.parametrize("bad", ["1", 1.0, None, b"\x01"], ids=["str", "float", "none", "bytes"])
def test_encode_non_integer_names_the_field(lay: FormatLayout, path: str, bad: Any) -> None:
    with pytest.raises(EncodeError) as exc:
        encode(struct_of(lay), set_path(example_value(lay), path, bad))
    assert (exc.value.fmt, exc.value.path) == (lay.name, path)


@pytest.mark.parametrize(("lay", "path"), _leaves(lambda leaf: leaf.field.reserved))
def test_encode_reserved_nonzero_rejected_unless_not_strict(lay: FormatLayout, path: str) -> None:
    fmt = struct_of(lay)
    value = set_path(example_value(lay), path, 1)
    with pytest.raises(EncodeError) as exc:
        encode(fmt, value)
    assert (exc.value.path, exc.value.reason) == (path, "reserved field is 0x1, must be zero")
    raw = encode(fmt, value, strict=False)  # a test may build invalid input on purpose; decode rejects it
    with pytest.raises(DecodeError) as dexc:
        decode(fmt, raw)
    assert dexc.value.path == path


@pytest.mark.parametrize(("lay", "path"), _leaves(lambda leaf: leaf.field.enum is not None))
def test_encode_undefined_enum_rejected(lay: FormatLayout, path: str) -> None:
    with pytest.raises(EncodeError) as exc:
        encode(struct_of(lay), set_path(example_value(lay), path, 0))
    assert exc.value.path == path
    assert "is not a defined" in exc.value.reason


@pytest.mark.parametrize(("lay", "path"), _leaves(lambda leaf: leaf.field.flags is not None))
def test_encode_undefined_flag_rejected(lay: FormatLayout, path: str) -> None:
    leaf = next(lf for lf in lay.leaves() if lf.path == path)
    _, hi = int_range(leaf.size, False)
    undefined = hi & ~flag_mask(leaf.field)
    with pytest.raises(EncodeError) as exc:
        encode(struct_of(lay), set_path(example_value(lay), path, undefined))
    assert exc.value.path == path
    assert f"bits {undefined:#x}" in exc.value.reason


@by_layout
def test_encode_rejects_non_mapping(lay: FormatLayout) -> None:
    with pytest.raises(EncodeError):
        encode(struct_of(lay), [1, 2, 3])  # type: ignore[arg-type]
