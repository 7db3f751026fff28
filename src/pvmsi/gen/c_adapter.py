"""``pvmsi gen c-adapter``: a C skeleton of a hypervisor's conformance-harness adapter.

The skeleton needs nothing of pvmsi's Python package: it includes the generated C header (``pvmsi gen c-header``)
and speaks the harness protocol on its standard input and output (``--iut exec:./adapter``). It does the part
every adapter shares, as the appendix "Conformance harness protocol" states it: framing (magic, version, length),
the session rules (HELLO first, one response per request, of the kind ``RESPONSE_OF`` names, ERROR frames with
the offending offset, BYE) and each request's payload size. Every request of the hypervisor role goes to a
``handle_*`` function that answers ``ERROR UNSUPPORTED`` until its author fills it in, so the suite reports the
tests that need it as unsupported, never as failed. The request kinds, their payload structs and response kinds
are generated from spec/ (``REQUESTS_SERVED_BY``, ``PAYLOADS``, ``RESPONSE_OF``).
"""

from __future__ import annotations

from ..spec.formats.harness import PAYLOADS
from ..spec.harness_constants import REQUESTS_SERVED_BY, RESPONSE_OF, FrameKind, HarnessRole
from ..spec.layout import layout_of
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from .c_common import banner, comment, squeeze

_PROLOGUE = r"""
#define _POSIX_C_SOURCE 200809L /* read(), write(), strnlen() */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pvmsi.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the wire structs are little-endian and this skeleton uses them as they are: convert each field on this host"
#endif

/* The name HELLO_ACK reports (at most 8 bytes). */
#ifndef ADAPTER_NAME
#define ADAPTER_NAME "my-hv"
#endif

/* One frame: the header, then up to PVMSI_HARNESS_MAX_PAYLOAD bytes. */
struct frame {
	struct pvmsi_frame_header hdr;
	uint8_t payload[PVMSI_HARNESS_MAX_PAYLOAD];
};

/*
 * What a handler answers. To answer with a response, leave `status` 0, keep `kind` (the request's response
 * kind is preset) and write `length` bytes (a multiple of 8) to `payload`. To answer ERROR, set `status` to a
 * PVMSI_HSTATUS_* code, `offset` to the byte offset in the request frame (header included) of the offending
 * field and `detail` to one line for people.
 */
struct reply {
	const char *detail;
	uint32_t status;
	uint32_t offset;
	uint32_t kind;
	uint32_t length;
	uint8_t payload[PVMSI_HARNESS_MAX_PAYLOAD];
};

typedef void handler_fn(const struct frame *req, struct reply *rsp);

/* Offset of a payload field within the frame, as ERROR's `offset` wants it. */
#define PAYLOAD_AT(type, member) ((uint32_t)(sizeof(struct pvmsi_frame_header) + offsetof(type, member)))

static void unsupported(const struct frame *req, struct reply *rsp)
{
	(void)req;
	rsp->status = PVMSI_HSTATUS_UNSUPPORTED;
	rsp->offset = 0;
	rsp->detail = "not implemented by this adapter yet";
}
"""

_IO = r"""
/* -- framing and the session rules: nothing below needs changing -------------------------------------------- */

static struct frame request;
static struct reply response;

/* 1: all `n` bytes read; 0: end of input before the first byte; -1: end of input or an error inside. */
static int read_exact(void *buf, size_t n)
{
	uint8_t *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(STDIN_FILENO, p + got, n - got);
		if (r <= 0)
			return got == 0 && r == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

static int write_exact(const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int send_frame(uint16_t kind, uint32_t seq, const void *payload, uint32_t length)
{
	struct pvmsi_frame_header hdr = {
		.magic = PVMSI_HARNESS_MAGIC,
		.version_major = PVMSI_HARNESS_VERSION_MAJOR,
		.version_minor = PVMSI_HARNESS_VERSION_MINOR,
		.kind = kind,
		.seq = seq,
		.length = length,
	};
	if (write_exact(&hdr, sizeof(hdr)) < 0)
		return -1;
	return length ? write_exact(payload, length) : 0;
}

static int send_error(uint32_t seq, uint32_t code, uint32_t offset, uint16_t request_kind, const char *detail)
{
	static uint8_t buf[sizeof(struct pvmsi_harness_error) + 256];
	struct pvmsi_harness_error err = {
		.code = code,
		.offset = offset,
		.request_kind = request_kind,
		.detail_size = (uint32_t)strnlen(detail, 248),
	};
	uint32_t length = (uint32_t)sizeof(err) + ((err.detail_size + 7u) & ~7u);
	memset(buf, 0, sizeof(buf));
	memcpy(buf, &err, sizeof(err));
	memcpy(buf + sizeof(err), detail, err.detail_size);
	return send_frame(PVMSI_HFRAME_ERROR, seq, buf, length);
}

static int serve_hello(const struct frame *req)
{
	struct pvmsi_harness_hello hello;
	memcpy(&hello, req->payload, sizeof(hello));
	if (hello.role != PVMSI_HROLE_HYPERVISOR)
		return send_error(req->hdr.seq, PVMSI_HSTATUS_WRONG_ROLE, PAYLOAD_AT(struct pvmsi_harness_hello, role),
						PVMSI_HFRAME_HELLO, "this IUT is a hypervisor");
	struct pvmsi_harness_hello ack = {
		.role = PVMSI_HROLE_HYPERVISOR,
		.spec_major = PVMSI_VERSION_MAJOR,
		.spec_minor = PVMSI_VERSION_MINOR,
		.max_payload = PVMSI_HARNESS_MAX_PAYLOAD,
	};
	memcpy(ack.name, ADAPTER_NAME, strnlen(ADAPTER_NAME, sizeof(ack.name)));
	return send_frame(PVMSI_HFRAME_HELLO_ACK, req->hdr.seq, &ack, sizeof(ack));
}

int main(void)
{
	int greeted = 0;
	for (;;) {
		int r = read_exact(&request.hdr, sizeof(request.hdr));
		if (r <= 0)
			return r == 0 ? 0 : 1;
		const struct pvmsi_frame_header *h = &request.hdr;
		if (h->magic != PVMSI_HARNESS_MAGIC) { /* fatal: the stream cannot be trusted any more */
			send_error(0, PVMSI_HSTATUS_BAD_MAGIC, 0, 0, "not a harness frame");
			return 1;
		}
		if (h->length > PVMSI_HARNESS_MAX_PAYLOAD || h->length % 8) { /* fatal: no way to find the next frame */
			send_error(h->seq, PVMSI_HSTATUS_BAD_LENGTH, offsetof(struct pvmsi_frame_header, length), h->kind,
						"payload length is not a multiple of 8 up to PVMSI_HARNESS_MAX_PAYLOAD");
			return 1;
		}
		if (h->length && read_exact(request.payload, h->length) != 1)
			return 1;
		if (h->version_major != PVMSI_HARNESS_VERSION_MAJOR) {
			if (send_error(h->seq, PVMSI_HSTATUS_BAD_VERSION, offsetof(struct pvmsi_frame_header, version_major),
						h->kind, "harness major version not implemented") < 0)
				return 1;
			continue;
		}
		const struct request_kind *rk = find_request(h->kind);
		if (rk == NULL) {
			if (send_error(h->seq, PVMSI_HSTATUS_UNKNOWN_KIND, offsetof(struct pvmsi_frame_header, kind), h->kind,
						"not a request to a hypervisor") < 0)
				return 1;
			continue;
		}
		if (h->length < rk->fixed_size || (!rk->has_tail && h->length != rk->fixed_size)) {
			/* harness "Errors and the order of the checks": the first byte missing, or the first past the format */
			uint32_t at = sizeof(*h) + (h->length < rk->fixed_size ? h->length : rk->fixed_size);
			if (send_error(h->seq, PVMSI_HSTATUS_BAD_LENGTH, at, h->kind, "payload length is wrong for this kind") < 0)
				return 1;
			continue;
		}
		if (!greeted && h->kind != PVMSI_HFRAME_HELLO && h->kind != PVMSI_HFRAME_BYE) {
			/* not served; the session stays open and un-greeted, a later HELLO greets it */
			if (send_error(h->seq, PVMSI_HSTATUS_NO_HELLO, offsetof(struct pvmsi_frame_header, kind), h->kind,
						"a session starts with HELLO") < 0)
				return 1;
			continue;
		}
		if (rk->wrong_role) {
			if (send_error(h->seq, PVMSI_HSTATUS_WRONG_ROLE, offsetof(struct pvmsi_frame_header, kind), h->kind,
						"this IUT is a hypervisor") < 0)
				return 1;
			continue;
		}
		if (h->kind == PVMSI_HFRAME_HELLO) {
			if (serve_hello(&request) < 0)
				return 1;
			greeted = 1;
			continue;
		}
		if (h->kind == PVMSI_HFRAME_BYE) {
			send_frame(PVMSI_HFRAME_OK, h->seq, NULL, 0);
			return 0;
		}
		memset(&response, 0, offsetof(struct reply, payload));
		response.kind = rk->response;
		response.detail = "";
		rk->handle(&request, &response);
		r = response.status ? send_error(h->seq, response.status, response.offset, h->kind, response.detail)
						: send_frame((uint16_t)response.kind, h->seq, response.payload, response.length);
		if (r < 0)
			return 1;
	}
}
"""


def _handler(kind: FrameKind) -> list[str]:
    fmt = PAYLOADS[kind].fmt
    request = f"struct {layout_of(fmt).c_name}" if fmt is not None else "no payload"
    response = RESPONSE_OF[kind]
    answer = PAYLOADS[response].fmt
    answer_text = f"struct {layout_of(answer).c_name}" if answer is not None else "no payload"
    tail = PAYLOADS[kind].tail
    follows = f", then {tail[0]}" if tail else ""
    return [
        *comment(
            f"{kind.name}: {request}{follows}. Answer {response.name} ({answer_text}). "
            "Fill in with a call into your hypervisor."
        ),
        f"static void handle_{kind.name.lower()}(const struct frame *req, struct reply *rsp)",
        "{",
        "\tunsupported(req, rsp);",
        "}",
        "",
    ]


def _table() -> list[str]:
    served = REQUESTS_SERVED_BY[HarnessRole.HYPERVISOR]
    others = [k for role, kinds in REQUESTS_SERVED_BY.items() if role is not HarnessRole.HYPERVISOR for k in kinds]
    rows: list[str] = []
    for kind in (FrameKind.HELLO, *served, FrameKind.BYE, *others):
        fmt = PAYLOADS[kind].fmt
        size = f"sizeof(struct {layout_of(fmt).c_name})" if fmt is not None else "0"
        handle = f"handle_{kind.name.lower()}" if kind in served else "NULL"
        rows.append(
            f"\t{{ PVMSI_HFRAME_{kind.name}, PVMSI_HFRAME_{RESPONSE_OF[kind].name}, {size}, "
            f"{int(PAYLOADS[kind].tail is not None)}, {int(kind in others)}, {handle} }},"
        )
    return [
        "/* Every request a hypervisor IUT may receive: its response kind and payload size (spec harness PAYLOADS). */",
        "struct request_kind {",
        "\tuint16_t kind;",
        "\tuint16_t response;",
        "\tuint32_t fixed_size;",
        "\tint has_tail;",
        "\tint wrong_role;",
        "\thandler_fn *handle;",
        "};",
        "",
        "static const struct request_kind REQUESTS[] = {",
        *rows,
        "};",
        "",
        "static const struct request_kind *find_request(uint16_t kind)",
        "{",
        "\tfor (size_t i = 0; i < sizeof(REQUESTS) / sizeof(REQUESTS[0]); i++)",
        "\t\tif (REQUESTS[i].kind == kind)",
        "\t\t\treturn &REQUESTS[i];",
        "\treturn NULL;",
        "}",
    ]


def c_adapter() -> str:
    """The skeleton adapter, as C11 text that compiles with the stdint header beside it as ``pvmsi.h``."""
    lines = banner(
        "stdint",
        f"pvmsi_adapter.c: skeleton of a hypervisor's pvmsi {VERSION_MAJOR}.{VERSION_MINOR} conformance-harness "
        "adapter, on stdin/stdout.",
        "pvmsi gen c-adapter",
    )
    lines += [
        "/*",
        " * Build: pvmsi gen c-header -o pvmsi.h && cc -std=c11 -Wall -Wextra -O2 -o adapter pvmsi_adapter.c",
        " * Run:   pvmsi conformance run --role hypervisor --iut exec:./adapter",
        " * Every handle_* function below answers ERROR UNSUPPORTED until you fill it in.",
        " * Generated from the pvmsi spec: the request table and the framing follow the appendix exactly.",
        " */",
    ]
    lines += _PROLOGUE.strip("\n").split("\n")
    lines.append("")
    for kind in REQUESTS_SERVED_BY[HarnessRole.HYPERVISOR]:
        lines += _handler(kind)
    lines += _table()
    lines += _IO.rstrip("\n").split("\n")
    return squeeze(lines)
