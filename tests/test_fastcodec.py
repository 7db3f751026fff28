"""The hot-path codec agrees with the construct definitions: same values, same bytes, same errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    LAYOUTS,
    BadInput,
    all_bad_inputs,
    encoded_for,
    example_value,
    field_paths,
    mutated_for,
    out_of_range_values,
    per_format,
    plain,
    set_path,
    struct_of,
    values_for,
    without_path,
)

from pvmsi.spec.calls import LARGEST_BATCH
from pvmsi.spec.codec import DecodeError, EncodeError, decode, encode
from pvmsi.spec.fastcodec import BatchDecodeError, FastFormat, all_fast, decode_batch, fast, fast_of
from pvmsi.spec.layout import FormatLayout

by_layout = pytest.mark.parametrize("lay", LAYOUTS, ids=[lay.name for lay in LAYOUTS])
BATCH_FORMATS = [lay for lay in LAYOUTS if lay.area == "messages"]
by_entry = pytest.mark.parametrize("lay", BATCH_FORMATS, ids=[lay.name for lay in BATCH_FORMATS])


def _construct_outcome(lay: FormatLayout, raw: bytes, exact: bool = True) -> tuple[str, Any]:
    try:
        return "ok", plain(decode(struct_of(lay), raw, exact=exact))
    except DecodeError as err:
        return "error", (err.fmt, err.path, err.offset, err.reason, str(err))


def _fast_outcome(lay: FormatLayout, raw: bytes, exact: bool = True) -> tuple[str, Any]:
    ff = fast(lay.name)
    try:
        value = ff.to_mapping(ff.decode(raw, exact=exact))
    except DecodeError as err:
        outcome: tuple[str, Any] = "error", (err.fmt, err.path, err.offset, err.reason, str(err))
    else:
        outcome = "ok", value
    # the record and the Container views accept and reject exactly what the flat decode does, with the same error
    try:
        views: tuple[str, Any] = (
            "ok",
            (tuple(ff.decode_record(raw, exact=exact)), ff.decode_container(raw, exact=exact)),
        )
    except DecodeError as err:
        views = "error", (err.fmt, err.path, err.offset, err.reason, str(err))
    if outcome[0] == "ok":
        assert views[0] == "ok"
        assert ff.to_mapping(views[1][0]) == views[1][1] == outcome[1]
    else:
        assert views == outcome
    return outcome


def test_registry() -> None:
    assert [ff.name for ff in all_fast()] == [lay.name for lay in LAYOUTS]
    for lay in LAYOUTS:
        assert fast(lay.name) is fast_of(struct_of(lay))


@by_layout
def test_struct_derived_from_layout(lay: FormatLayout) -> None:
    ff = fast(lay.name)
    assert isinstance(ff, FastFormat)
    assert ff.size == ff.struct.size == lay.size
    assert ff.fields == tuple(leaf.path for leaf in lay.leaves())
    assert [leaf.offset for leaf in ff.leaves] == [leaf.offset for leaf in lay.leaves()]
    assert ff.format.startswith("<")
    for i, path in enumerate(ff.fields):
        assert ff.index(path) == i
    assert lay.name in repr(ff)


@by_layout
def test_example_round_trip(lay: FormatLayout) -> None:
    ff = fast(lay.name)
    value = example_value(lay)
    raw = encode(struct_of(lay), value)
    assert ff.encode(value) == raw
    flat = ff.decode(raw)
    assert ff.pack(*flat) == raw
    assert ff.to_mapping(flat) == value
    assert ff.flatten(value) == flat
    record = ff.decode_record(raw)
    assert tuple(record) == flat
    first = ff.fields[0].replace(".", "_")
    assert getattr(record, first) == flat[0]
    buf = bytearray(lay.size + 8)
    ff.pack_into(buf, 8, *flat)
    assert bytes(buf[8:]) == raw
    assert ff.unpack_from(buf, 8) == flat


@by_layout
@per_format
@given(data=st.data())
def test_agrees_with_construct_on_valid_values(lay: FormatLayout, data: st.DataObject) -> None:
    ff = fast(lay.name)
    value = data.draw(values_for(lay))
    raw = encode(struct_of(lay), value)
    assert ff.encode(value) == raw
    flat = ff.decode(raw)
    assert ff.to_mapping(flat) == plain(decode(struct_of(lay), raw)) == value
    assert ff.pack(*flat) == raw
    # what the conformance suite's toolkit decodes to: equal to construct's Container, nested fields included
    container = ff.decode_container(raw)
    assert container == decode(struct_of(lay), raw)
    assert all(getattr(container, f.name) == container[f.name] for f in lay.fields)
    assert ff.decode_record(raw) == flat


@by_layout
@per_format
@given(data=st.data())
def test_agrees_with_construct_on_arbitrary_bytes(lay: FormatLayout, data: st.DataObject) -> None:
    raw = data.draw(mutated_for(lay))
    assert _fast_outcome(lay, raw) == _construct_outcome(lay, raw)


@by_layout
@settings(max_examples=40)
@given(data=st.data())
def test_agrees_with_construct_on_arbitrary_lengths(lay: FormatLayout, data: st.DataObject) -> None:
    raw = data.draw(st.one_of(st.binary(max_size=2 * lay.size + 1), encoded_for(lay).map(lambda b: b + b"\0")))
    exact = data.draw(st.booleans())
    assert _fast_outcome(lay, raw, exact) == _construct_outcome(lay, raw, exact)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in all_bad_inputs()])
def test_same_error_on_every_bad_input(case: BadInput) -> None:
    lay = next(lay for lay in LAYOUTS if lay.name == case.fmt)
    fast_result = _fast_outcome(lay, case.data)
    assert fast_result == _construct_outcome(lay, case.data)
    assert fast_result[0] == "error"
    assert fast_result[1][1:3] == (case.path, case.offset)


@by_layout
def test_unpack_from_offset_reports_absolute_offset(lay: FormatLayout) -> None:
    ff = fast(lay.name)
    raw = bytearray(b"\xee" * 16 + encode(struct_of(lay), example_value(lay)))
    assert ff.unpack_from(raw, 16) == ff.decode(raw[16:])
    with pytest.raises(DecodeError) as exc:
        ff.unpack_from(raw[:-1], 16)
    last = ff.leaves[-1]
    assert (exc.value.path, exc.value.offset) == (last.path, 16 + last.offset)


# -- encoding errors ------------------------------------------------------------------------------------------------


def _encode_error(fn: Any, *args: Any) -> tuple[str, str, str]:
    with pytest.raises(EncodeError) as exc:
        fn(*args)
    return exc.value.fmt, exc.value.path, exc.value.reason


@pytest.mark.parametrize(
    ("lay", "path", "value"),
    [pytest.param(lay, p, v, id=i) for lay in LAYOUTS for i, p, v in out_of_range_values(lay)],
)
def test_same_encode_error_out_of_range(lay: FormatLayout, path: str, value: int) -> None:
    ff = fast(lay.name)
    bad = set_path(example_value(lay), path, value)
    expected = _encode_error(encode, struct_of(lay), bad)
    assert expected[1] == path
    assert _encode_error(ff.encode, bad) == expected
    flat = list(ff.flatten(example_value(lay)))
    flat[ff.index(path)] = value
    assert _encode_error(ff.pack, *flat) == expected
    assert _encode_error(ff.pack_into, bytearray(lay.size), 0, *flat) == expected


@pytest.mark.parametrize(
    ("lay", "path"),
    [
        pytest.param(lay, leaf.path, id=f"{lay.name}.{leaf.path}")
        for lay in LAYOUTS
        for leaf in lay.leaves()
        if leaf.field.reserved or leaf.field.enum or leaf.field.flags
    ],
)
def test_same_encode_error_reserved_enum_flags(lay: FormatLayout, path: str) -> None:
    ff = fast(lay.name)
    leaf = ff.leaves[ff.index(path)]
    bad_value = 0 if leaf.enum_values is not None else (1 << (8 * leaf.size - 1))
    bad = set_path(example_value(lay), path, bad_value)
    expected = _encode_error(encode, struct_of(lay), bad)
    assert expected[1] == path
    assert _encode_error(ff.encode, bad) == expected
    flat = list(ff.flatten(example_value(lay)))
    flat[ff.index(path)] = bad_value
    assert _encode_error(ff.pack, *flat) == expected


@pytest.mark.parametrize(
    ("lay", "path"),
    [
        pytest.param(lay, path, id=f"{lay.name}.{path}")
        for lay in LAYOUTS
        for path in field_paths(lay, lambda leaf: not leaf.field.reserved)
    ],
)
def test_same_encode_error_missing_or_wrong_type(lay: FormatLayout, path: str) -> None:
    ff = fast(lay.name)
    missing = without_path(example_value(lay), path)
    assert _encode_error(ff.encode, missing) == _encode_error(encode, struct_of(lay), missing)
    wrong = set_path(example_value(lay), path, "x")
    assert _encode_error(ff.encode, wrong) == _encode_error(encode, struct_of(lay), wrong)


@by_layout
def test_pack_wrong_arity(lay: FormatLayout) -> None:
    ff = fast(lay.name)
    flat = ff.flatten(example_value(lay))
    for args in (flat[:-1], (*flat, 0)):
        fmt, path, reason = _encode_error(ff.pack, *args)
        assert (fmt, path) == (lay.name, "<value>")
        assert "values" in reason


# -- batches ------------------------------------------------------------------------------------------------------


@by_entry
@given(data=st.data())
def test_batch_decode_matches_per_entry_decode(lay: FormatLayout, data: st.DataObject) -> None:
    ff = fast(lay.name)
    pool = data.draw(st.lists(values_for(lay), min_size=1, max_size=4))
    values = [pool[i % len(pool)] for i in range(data.draw(st.integers(0, LARGEST_BATCH)))]
    prefix = data.draw(st.binary(max_size=40))
    raws = [encode(struct_of(lay), v) for v in values]
    buf = prefix + b"".join(raws) + data.draw(st.binary(max_size=8))
    out = decode_batch(lay.name, buf, len(values), len(prefix))
    assert out == [ff.decode(r) for r in raws]
    assert [ff.to_mapping(t) for t in out] == values
    assert ff.pack_batch(out) == b"".join(raws)


@by_entry
@settings(max_examples=100)
@given(data=st.data())
def test_batch_stops_at_first_bad_entry_with_construct_error(lay: FormatLayout, data: st.DataObject) -> None:
    ff = fast(lay.name)
    count = data.draw(st.integers(1, LARGEST_BATCH))
    pool = data.draw(st.lists(encoded_for(lay), min_size=1, max_size=4))
    entries = [pool[i % len(pool)] for i in range(count)]
    for _ in range(data.draw(st.integers(0, 3))):  # corrupt up to three entries
        i = data.draw(st.integers(0, count - 1))
        entries[i] = data.draw(mutated_for(lay))
    base = data.draw(st.integers(0, 32))
    buf = bytes(base) + b"".join(entries)
    outcomes = [_construct_outcome(lay, e) for e in entries]
    bad = [i for i, o in enumerate(outcomes) if o[0] == "error"]
    if not bad:
        assert [ff.to_mapping(t) for t in ff.unpack_batch(buf, count, base)] == [o[1] for o in outcomes]
        return
    first = bad[0]
    with pytest.raises(BatchDecodeError) as exc:
        ff.unpack_batch(buf, count, base)
    err = exc.value
    assert isinstance(err, DecodeError)
    _, (fmt, path, offset, reason, _) = outcomes[first]
    assert (err.index, err.fmt, err.path, err.reason) == (first, fmt, path, reason)
    assert err.offset == base + first * lay.size + offset
    assert [ff.to_mapping(t) for t in err.decoded] == [o[1] for o in outcomes[:first]]
    assert f"entry {first}" in str(err)


@by_entry
@pytest.mark.parametrize("missing", [1, 7, None])
def test_batch_short_buffer(lay: FormatLayout, missing: int | None) -> None:
    ff = fast(lay.name)
    one = encode(struct_of(lay), example_value(lay))
    count = 4
    cut = lay.size if missing is None else min(missing, lay.size)
    buf = (one * count)[:-cut]
    with pytest.raises(BatchDecodeError) as exc:
        ff.unpack_batch(buf, count)
    index, rem = divmod(len(buf), lay.size)
    leaf = next(lf for lf in ff.leaves if lf.offset + lf.size > rem)
    assert (exc.value.index, exc.value.path) == (index, leaf.path)
    assert exc.value.offset == index * lay.size + leaf.offset
    assert len(exc.value.decoded) == index
    # The same entry decoded alone gives the same field and reason.
    with pytest.raises(DecodeError) as single:
        ff.decode(buf[index * lay.size :])
    assert (single.value.path, single.value.reason) == (exc.value.path, exc.value.reason)


@by_entry
def test_batch_zero_and_negative(lay: FormatLayout) -> None:
    ff = fast(lay.name)
    assert ff.unpack_batch(b"", 0) == []
    with pytest.raises(ValueError, match="negative"):
        ff.unpack_batch(bytes(64), -1)


@pytest.mark.parametrize("name", ["batch_out", "alloc_result", "activate_entry"])
def test_build_makes_the_record_by_field_name(name: str) -> None:
    """``build`` takes fields by name in any order, zeroes the rest, and packs as the record says."""
    ff = fast(name)
    fields = list(ff.record_type._fields)
    given = {f: i + 1 for i, f in enumerate(reversed(fields[:2]))}
    record = ff.build(**given)
    assert record == ff.record_type(**given)
    assert type(record) is ff.record_type
    assert ff.unpack_record_from(ff.pack(*record)) == record
    with pytest.raises(TypeError):
        ff.build(1)
