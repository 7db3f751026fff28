"""Unit tests of pvmsi.docsgen: the renderers and the placeholder language, without building the site."""

from __future__ import annotations

import re

import pytest
from paths import ROOT

from pvmsi.docsgen import DIRECTIVES, DocsError, SiteIndex, expand, find_placeholders, scan
from pvmsi.docsgen.calls import function_id_text, mermaid_state_diagram, render_call, render_function_ids
from pvmsi.docsgen.constants import flag_diagram, flag_width, render_constants, render_register, value_text
from pvmsi.docsgen.context import Ctx
from pvmsi.docsgen.diagrams import BitField, byte_rows, fill_reserved
from pvmsi.docsgen.formats import field_group, field_rows, format_table, layout, render_format
from pvmsi.docsgen.markup import escape_plain, md_text, relative_link
from pvmsi.docsgen.requirements import clauses, render_conformance, render_requirements, requirement_item
from pvmsi.spec.callconv import ARM64, RISCV64, X86_64
from pvmsi.spec.calls import CALLS, call
from pvmsi.spec.constants import CONSTANT_GROUPS, Feature, group
from pvmsi.spec.layout import all_layouts
from pvmsi.spec.requirements import REQUIREMENTS, SECTIONS, Role, by_section
from pvmsi.spec.states import DEVICE_MACHINE, VM_MACHINE
from pvmsi.spec.version import encode_version


def full_index() -> SiteIndex:
    """Every object at home on one page, so any renderer can link."""
    page = "formats.md"
    return SiteIndex(
        format_home={lay.name: page for lay in all_layouts()},
        constants_home={g.key: page for g in CONSTANT_GROUPS},
        call_home={c.name: "calls.md" for c in CALLS},
        machine_home={},
        requirement_index="requirements.md",
    )


CTX = Ctx(full_index(), "messages.md")


def table_body(md: str) -> list[list[str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines[2:]]


# --- formats ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lay", all_layouts(), ids=lambda lay: lay.name)
def test_format_table_has_a_row_per_field_at_its_offset(lay: object) -> None:
    from pvmsi.spec.layout import FormatLayout

    assert isinstance(lay, FormatLayout)
    rows = table_body(format_table(CTX, lay))
    top = [r for r in rows if not r[3].startswith("&nbsp;")]
    assert len(top) == len(lay.fields)
    for row, f in zip(top, lay.fields, strict=True):
        assert row[0] == str(f.offset)
        assert row[1] == str(f.size)
        assert f"`{f.name}`" == row[3]
        if f.reserved:
            assert row[4] == "Reserved, must be zero."
    assert len(rows) == len(field_rows(lay))


def test_alloc_entry_rows_exact() -> None:
    rows = table_body(format_table(CTX, layout("alloc_entry")))
    assert [r[:4] for r in rows] == [
        ["0", "1", "`u8`", "`kind`"],
        ["1", "1", "`u8`", "`flags`"],
        ["2", "2", "`u16`", "`vector_count`"],
        ["4", "4", "`u32`", "`slot`"],
        ["8", "4", "`u32`", "`vcpu`"],
        ["12", "4", "`u32`", "`vector`"],
        ["16", "1", "`u8`", "`alloc_flags`"],
        ["17", "1", "`u8`", "`reserved0`"],
        ["18", "2", "`u16`", "`reserved1`"],
        ["20", "4", "`u32`", "`hint_vcpu`"],
    ]
    # enum and flag fields link to their constant tables
    assert "[msg_kind](formats.md#const-msg_kind)" in rows[0][4]
    assert "[delivery_flag](formats.md#const-delivery_flag)" in rows[1][4]


def test_nested_format_rows_and_link() -> None:
    rows = table_body(format_table(CTX, layout("batch_in")))
    assert rows[0][2] == "[`device_id`](formats.md#format-device_id)"
    assert rows[1][3] == "&nbsp;&nbsp;`device.segment`"
    assert rows[1][0] == "0"
    sub = [r for r in rows if "device.subdevice_id" in r[3]]
    assert sub[0][0] == str(layout("device_id").field("subdevice_id").offset)


def test_signed_fields_are_shown_signed() -> None:
    rows = table_body(format_table(CTX, layout("batch_out")))
    status = next(r for r in rows if r[3] == "`status`")
    assert status[2] == "`s32`"


@pytest.mark.parametrize("lay", all_layouts(), ids=lambda lay: lay.name)
def test_byte_diagram_covers_each_byte_once(lay: object) -> None:
    from pvmsi.spec.layout import FormatLayout

    assert isinstance(lay, FormatLayout)
    rows = byte_rows(lay)
    assert sum(c.length for row in rows for c in row) == lay.size
    for i, row in enumerate(rows):
        assert sum(c.length for c in row) == min(8, lay.size - 8 * i)
        assert row[0].offset == 8 * i


def test_render_format_anchor_and_diagram() -> None:
    out = render_format(CTX, "device_id")
    assert out.startswith('<div class="pvmsi-format" id="format-device_id" markdown="1">')
    assert 'id="layout-device_id"' in out
    assert "pvmsi-reserved" in out


def test_feature_fields_link_by_c_prefix() -> None:
    f = layout("hv_info").field("features_offered")
    assert field_group(f) == "feature"


# --- constants and registers --------------------------------------------------------------------------------


def test_constants_table_lists_every_member() -> None:
    for g in CONSTANT_GROUPS:
        out = render_constants(CTX, g.key)
        assert f'id="const-{g.key}"' in out
        for name, _, _ in g.members:
            assert f"`{g.c_name(name)}`" in out


def test_value_text() -> None:
    assert value_text(group("status"), -3) == "-3"
    assert value_text(group("function"), 0x20) == "0x20 (32)"
    assert value_text(group("feature"), 1 << 4) == "`1 << 4` (0x10)"


def test_flag_diagram_marks_undefined_bits_reserved() -> None:
    g = group("feature")
    out = flag_diagram(g)
    assert flag_width(g) == 64
    assert "<th>63:5</th>" in out
    for name, _, _ in g.members:
        assert f">{name}<" in out
    with pytest.raises(DocsError):
        flag_diagram(group("status"))


def test_fill_reserved() -> None:
    cells = fill_reserved(8, [BitField(3, 3, "a"), BitField(0, 0, "b")])
    assert [(c.hi, c.lo, c.reserved) for c in cells] == [(7, 4, True), (3, 3, False), (2, 1, True), (0, 0, False)]
    with pytest.raises(ValueError, match="defined twice"):
        fill_reserved(8, [BitField(3, 0, "a"), BitField(2, 2, "b")])


def test_register_encodings() -> None:
    v = render_register("version")
    assert f"0x{encode_version(1, 0):08X}" in v
    assert "<th>31:16</th>" in v
    assert "<th>15:0</th>" in v
    arm = render_register("function-id-arm64")
    assert "<th>29:24</th>" in arm
    assert f"0x{ARM64.call_base:08X}" in arm
    assert "<th>7:3</th>" in render_register("devfn")
    assert "<th>31:20</th>" in render_register("subdevice-id")
    with pytest.raises(DocsError, match="unknown register"):
        render_register("nope")


# --- calls and state machines -------------------------------------------------------------------------------


def test_function_ids() -> None:
    c = call("MSG_ALLOC")
    assert function_id_text(X86_64, c) == f"rax = 0x{X86_64.function_id(c.fn):08X}"
    assert function_id_text(ARM64, c) == f"w0 = 0x{ARM64.function_id(c.fn):08X}"
    assert function_id_text(RISCV64, c) == "a7 = 0x0850564D, a6 = 0x20"
    out = render_function_ids(CTX)
    assert len(table_body(out)) == len(CALLS)


def test_call_section() -> None:
    out = render_call(CTX, "MSG_ALLOC")
    assert 'id="call-msg_alloc"' in out
    assert "(formats.md#format-batch_in)" in out
    assert "(formats.md#format-alloc_entry)" in out
    rows = table_body(out)
    assert ["arg0", "`rbx`", "`x1`", "`a0`", "GPA of the input block"] in rows


def test_state_machine_diagram_from_the_table() -> None:
    for m in (VM_MACHINE, DEVICE_MACHINE):
        out = mermaid_state_diagram(m)  # type: ignore[arg-type]
        assert f"[*] --> {m.initial.name}" in out
        for t in m.transitions:
            assert re.search(rf"{t.state.name} --> {t.next.name} : .*{re.escape(str(t.event.value))}", out)


# --- requirements -------------------------------------------------------------------------------------------


def test_requirement_items_are_anchored() -> None:
    for key, (_, page) in SECTIONS.items():
        out = render_requirements(Ctx(full_index(), page), key)
        for r in by_section(key):
            assert f"{{: #{r.id.lower()} .pvmsi-req }}" in out
            assert f"**{r.level.value}**" in out


def test_requirement_item_escapes_markdown() -> None:
    if not REQUIREMENTS:
        pytest.skip("empty registry")
    r = REQUIREMENTS[0].model_copy(update={"text": "x_y *z* [a](b) <b> MUST"})
    item = requirement_item(CTX, r)
    assert "x\\_y \\*z\\* \\[a\\](b) &lt;b&gt; MUST" in item


def test_conformance_separates_levels() -> None:
    for role in (Role.GUEST, Role.HYPERVISOR):
        groups = clauses(role)
        for key, g in groups.items():
            ids = {r.id for r in by_section(key) if r.role in (role, Role.BOTH)}
            assert {r.id for lst in g.values() for r in lst} == ids
    out = render_conformance(CTX, "hypervisor")
    assert "MUST / MUST NOT" in out
    with pytest.raises(DocsError):
        render_conformance(CTX, "both")


# --- markup -------------------------------------------------------------------------------------------------


def test_escaping_and_links() -> None:
    assert escape_plain("PVMSI_F_* | a") == "PVMSI\\_F\\_\\* \\| a"
    assert md_text("use `a_b|c` then d_e") == "use `a_b\\|c` then d\\_e"
    assert md_text("see HV-X-001.", lambda rid: "p.md#hv-x-001") == "see [HV-X-001](p.md#hv-x-001)."
    assert relative_link("formats.md", "x", "messages.md") == "formats.md#x"
    assert relative_link("messages.md", "x", "messages.md") == "#x"
    assert relative_link("formats.md", None, "sub/page.md") == "../formats.md"


# --- the placeholder language -------------------------------------------------------------------------------


def test_unknown_placeholder_directive_raises() -> None:
    with pytest.raises(DocsError, match="unknown placeholder directive 'tabel'"):
        expand("# x\n\n{{pvmsi tabel alloc_entry}}\n", "x.md", full_index())


def test_unknown_names_raise() -> None:
    for text in (
        "{{pvmsi format no_such_format}}",
        "{{pvmsi constants no_such_group}}",
        "{{pvmsi call NO_SUCH_CALL}}",
        "{{pvmsi requirements no_such_section}}",
        "{{pvmsi state-machine nope}}",
        "{{pvmsi callconv sparc}}",
        "{{pvmsi conformance-clauses both}}",
        "see {{pvmsi ref HV-NOPE-999}}",
    ):
        with pytest.raises(DocsError):
            expand(text + "\n", "x.md", full_index())


def test_malformed_and_misplaced_placeholders_raise() -> None:
    for text in ("{{pvmsi format}}", "{{pvmsi version 1}}", "{{pvmsi format alloc_entry", "a {{pvmsi formats}} b"):
        with pytest.raises(DocsError):
            find_placeholders(text, "x.md")


def test_inline_placeholders() -> None:
    assert expand("pvmsi {{pvmsi version}} is", "x.md", full_index()) == "pvmsi 1.0 is"
    if REQUIREMENTS:
        r = REQUIREMENTS[0]
        out = expand(f"see {{{{pvmsi ref {r.id}}}}}.", "x.md", full_index())
        assert out == f"see [{r.id}]({SECTIONS[r.section][1]}#{r.id.lower()})."


def test_block_placeholder_inside_admonition_is_indented() -> None:
    out = expand('!!! note "x"\n\n    {{pvmsi constants feature}}\n', "x.md", full_index())
    assert all(ln.startswith("    ") or not ln or ln.startswith("!!!") for ln in out.splitlines())


def test_every_directive_is_documented_by_scan_rules() -> None:
    assert {"format", "formats", "constants", "call", "requirements", "requirement-index", "ref"} <= set(DIRECTIVES)


def test_scan_finds_homes_and_checks_completeness() -> None:
    pages = [
        ("messages.md", "{{pvmsi format alloc_entry}}\n{{pvmsi requirements messages}}\n"),
        ("formats.md", "{{pvmsi formats}}\n{{pvmsi constants}}\n"),
    ]
    site = scan(pages, docs_dir=ROOT / "docs", complete=False)
    assert site.format_home["alloc_entry"] == "messages.md"
    assert site.format_home["batch_in"] == "formats.md"
    assert site.constants_home["status"] == "formats.md"
    with pytest.raises(DocsError, match="not placed on any page"):
        scan(pages, docs_dir=ROOT / "docs")


def test_scan_rejects_a_section_on_the_wrong_page() -> None:
    body = "{{pvmsi formats}}\n{{pvmsi constants}}\n{{pvmsi requirement-index}}\n{{pvmsi references}}\n"
    body += "".join(f"{{{{pvmsi call {c.name}}}}}\n" for c in CALLS)
    pages = [("all.md", body)]
    for key, (_, page) in SECTIONS.items():
        pages.append((page if key != "security" else "wrong.md", f"{{{{pvmsi requirements {key}}}}}\n"))
    with pytest.raises(DocsError, match=r"'security' must be placed once, on security\.md"):
        scan(pages, docs_dir=ROOT / "docs")


def test_feature_group_is_a_flags_group() -> None:
    assert group("feature").source is Feature


def test_formats_of_one_area_get_their_page_as_home() -> None:
    pages = [
        ("harness.md", "{{pvmsi formats harness}}\n"),
        ("formats.md", "{{pvmsi formats}}\n"),
    ]
    site = scan(pages, docs_dir=ROOT / "docs", complete=False)
    for lay in all_layouts():
        assert site.format_home[lay.name] == ("harness.md" if lay.area == "harness" else "formats.md")
    with pytest.raises(DocsError, match="unknown name 'nope'"):
        scan([("x.md", "{{pvmsi formats nope}}\n")], docs_dir=ROOT / "docs", complete=False)
