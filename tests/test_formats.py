"""Every wire format: round trip, exact size, layout rules and property tests (formats from the registry)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import LAYOUTS, example_value, minimal_value, per_format, plain, struct_of, values_for

from pvmsi.spec.codec import decode, encode
from pvmsi.spec.formats import FORMATS
from pvmsi.spec.layout import FormatLayout, format_layout, layout_of

ids = [lay.name for lay in LAYOUTS]
by_layout = pytest.mark.parametrize("lay", LAYOUTS, ids=ids)


def test_registry_is_complete() -> None:
    assert len(LAYOUTS) >= 12
    assert {lay.name for lay in LAYOUTS} == set(FORMATS)
    for lay in LAYOUTS:
        assert format_layout(lay.name) is lay
        assert layout_of(struct_of(lay)) is lay


@by_layout
@pytest.mark.parametrize("make", [example_value, minimal_value], ids=["example", "minimal"])
def test_round_trip_exact_size(lay: FormatLayout, make: Any) -> None:
    fmt = struct_of(lay)
    value = make(lay)
    data = encode(fmt, value)
    assert isinstance(data, bytes)
    assert len(data) == lay.size == fmt.sizeof()
    assert plain(decode(fmt, data)) == value
    assert encode(fmt, decode(fmt, data)) == data


@by_layout
def test_reserved_fields_may_be_omitted(lay: FormatLayout) -> None:
    fmt = struct_of(lay)
    value = example_value(lay)
    stripped = {k: v for k, v in value.items() if not lay.field(k).reserved}
    assert encode(fmt, stripped) == encode(fmt, value)


@by_layout
def test_size_is_multiple_of_8(lay: FormatLayout) -> None:
    assert lay.size > 0
    assert lay.size % 8 == 0
    assert lay.size % lay.alignment == 0


@by_layout
def test_fields_cover_exactly_and_are_naturally_aligned(lay: FormatLayout) -> None:
    end = 0
    for f in lay.fields:
        assert f.offset == end, f"{lay.name}.{f.name}: gap or overlap at {end}..{f.offset}"
        align = f.nested.alignment if f.nested is not None else (1 if f.type == "bytes" else f.elem_size)
        assert f.offset % align == 0, f"{lay.name}.{f.name} at {f.offset} is not {align}-aligned"
        assert align <= lay.alignment
        assert f.size == f.elem_size * f.count or f.type == "bytes"
        end = f.offset + f.size
    assert end == lay.size
    # The same holds for the flattened leaves, with absolute offsets.
    end = 0
    for leaf in lay.leaves():
        assert leaf.offset == end
        if leaf.field.type != "bytes":
            assert leaf.size in (1, 2, 4, 8)
            assert leaf.offset % leaf.size == 0
        end = leaf.offset + leaf.size
    assert end == lay.size


@by_layout
def test_reserved_fields_are_named_reserved(lay: FormatLayout) -> None:
    for leaf in lay.leaves():
        assert leaf.field.reserved == leaf.field.name.startswith("reserved"), leaf.path


@by_layout
def test_nested_formats_are_registered(lay: FormatLayout) -> None:
    for f in lay.fields:
        if f.nested is not None:
            assert f.type == f.nested.name
            assert f.nested is format_layout(f.type)
        else:
            assert f.type in ("u8", "u16", "u32", "u64", "bytes")


@by_layout
@per_format
@given(data=st.data())
def test_encode_decode_is_identity_and_decode_encode_gives_same_bytes(lay: FormatLayout, data: st.DataObject) -> None:
    fmt = struct_of(lay)
    value = data.draw(values_for(lay))
    encoded = encode(fmt, value)
    assert len(encoded) == lay.size
    decoded = decode(fmt, encoded)
    assert plain(decoded) == value
    assert encode(fmt, decoded) == encoded


def test_a_batch_fills_a_page_and_no_more() -> None:
    """Each batch call's max_batch (spec "Batching and partial completion"): its input and output blocks of that
    many entries fit a page, and one entry more does not fit in one of them."""
    from pvmsi.spec.calls import BATCH_CALLS, LARGEST_BATCH
    from pvmsi.spec.constants import Limit
    from pvmsi.spec.layout import format_layout

    page = int(Limit.PAGE_SIZE)
    for c in BATCH_CALLS.values():
        assert c.max_batch is not None
        assert c.input is not None
        assert c.output is not None
        assert c.input_entry is not None
        assert c.output_entry is not None
        sizes = [
            (format_layout(head).size, format_layout(entry).size)
            for head, entry in ((c.input, c.input_entry), (c.output, c.output_entry))
        ]
        assert all(h + c.max_batch * e <= page for h, e in sizes)
        assert any(h + (c.max_batch + 1) * e > page for h, e in sizes)
    assert max(c.max_batch or 0 for c in BATCH_CALLS.values()) == LARGEST_BATCH
    assert [c.max_batch for c in BATCH_CALLS.values()] == [169, 169, 508, 254]
