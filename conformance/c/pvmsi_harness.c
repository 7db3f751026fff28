/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * pvmsi_harness.c: framing and the session rules of the pvmsi conformance harness (spec appendix "Conformance
 * harness protocol", section "Sessions"), built on the generated pvmsi.h. See pvmsi_harness.h.
 */
#define _POSIX_C_SOURCE 200809L /* read(), write(), strnlen() */

#include "pvmsi_harness.h"

#include <string.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the wire structs are little-endian and this library uses them as they are: convert each field on this host"
#endif

/* The request table, from the spec (PVMSI_HARNESS_REQUESTS in pvmsi.h): nothing restated here. */
#define PVMSI_HREQUEST_ROW(req, rsp, size, tail, hv, guest) \
	{ PVMSI_HFRAME_##req, PVMSI_HFRAME_##rsp, (size), (tail), (hv), (guest), 0 },
static const struct pvmsi_hrequest REQUESTS[] = { PVMSI_HARNESS_REQUESTS(PVMSI_HREQUEST_ROW) };

const struct pvmsi_hrequest *pvmsi_hrequest_of(uint16_t kind)
{
	size_t i;
	for (i = 0; i < sizeof(REQUESTS) / sizeof(REQUESTS[0]); i++)
		if (REQUESTS[i].kind == kind)
			return &REQUESTS[i];
	return NULL;
}

/* 1: all `n` bytes read; 0: end of input before the first byte; -1: end of input or an error inside. */
static int read_exact(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r <= 0)
			return got == 0 && r == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

static int write_exact(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int pvmsi_hframe_read(int fd, struct pvmsi_hframe *f)
{
	int r = read_exact(fd, &f->hdr, sizeof(f->hdr));
	if (r <= 0)
		return r;
	if (f->hdr.length > PVMSI_HARNESS_MAX_PAYLOAD)
		return -1;
	return f->hdr.length ? (read_exact(fd, f->payload, f->hdr.length) == 1 ? 1 : -1) : 1;
}

int pvmsi_hframe_send(int fd, uint16_t kind, uint32_t seq, const void *payload, uint32_t length)
{
	struct pvmsi_frame_header hdr;
	memset(&hdr, 0, sizeof(hdr));
	hdr.magic = PVMSI_HARNESS_MAGIC;
	hdr.version_major = PVMSI_HARNESS_VERSION_MAJOR;
	hdr.version_minor = PVMSI_HARNESS_VERSION_MINOR;
	hdr.kind = kind;
	hdr.seq = seq;
	hdr.length = length;
	if (write_exact(fd, &hdr, sizeof(hdr)) < 0)
		return -1;
	return length ? write_exact(fd, payload, length) : 0;
}

int pvmsi_hsend_error(int fd, uint32_t seq, uint32_t code, uint32_t offset, uint16_t request_kind, const char *detail)
{
	static uint8_t buf[sizeof(struct pvmsi_harness_error) + 256];
	struct pvmsi_harness_error err;
	uint32_t length;
	memset(&err, 0, sizeof(err));
	err.code = code;
	err.offset = offset;
	err.request_kind = request_kind;
	err.detail_size = (uint32_t)strnlen(detail ? detail : "", 248);
	length = (uint32_t)sizeof(err) + PVMSI_HPAD8(err.detail_size);
	memset(buf, 0, sizeof(buf));
	memcpy(buf, &err, sizeof(err));
	memcpy(buf + sizeof(err), detail ? detail : "", err.detail_size);
	return pvmsi_hframe_send(fd, PVMSI_HFRAME_ERROR, seq, buf, length);
}

void pvmsi_hreply_error(struct pvmsi_hreply *rsp, uint32_t code, uint32_t offset, const char *detail)
{
	rsp->status = code;
	rsp->offset = offset;
	rsp->detail = detail;
}

void pvmsi_hreply_put(struct pvmsi_hreply *rsp, const void *data, uint32_t n)
{
	uint32_t padded = PVMSI_HPAD8(n);
	if (rsp->length + padded > sizeof(rsp->payload)) {
		pvmsi_hreply_error(rsp, PVMSI_HSTATUS_INTERNAL, 0, "response larger than one frame");
		return;
	}
	memcpy(rsp->payload + rsp->length, data, n);
	memset(rsp->payload + rsp->length + n, 0, padded - n);
	rsp->length += padded;
}

static struct pvmsi_hframe request;
static struct pvmsi_hreply response;

static int serve_hello(const struct pvmsi_hserver *srv, const struct pvmsi_hframe *req, int *greeted)
{
	struct pvmsi_harness_hello hello, ack;
	memcpy(&hello, req->payload, sizeof(hello));
	if (hello.role != srv->role) /* stays un-greeted; a later HELLO naming its role is served */
		return pvmsi_hsend_error(srv->out_fd, req->hdr.seq, PVMSI_HSTATUS_WRONG_ROLE,
					 PVMSI_HPAYLOAD_AT(struct pvmsi_harness_hello, role), PVMSI_HFRAME_HELLO,
					 "HELLO names the other role");
	memset(&ack, 0, sizeof(ack));
	ack.role = srv->role;
	ack.spec_major = PVMSI_VERSION_MAJOR;
	ack.spec_minor = PVMSI_VERSION_MINOR;
	ack.max_payload = PVMSI_HARNESS_MAX_PAYLOAD;
	if (srv->name)
		memcpy(ack.name, srv->name, strnlen(srv->name, sizeof(ack.name)));
	*greeted = 1;
	return pvmsi_hframe_send(srv->out_fd, PVMSI_HFRAME_HELLO_ACK, req->hdr.seq, &ack, sizeof(ack));
}

int pvmsi_hserve(const struct pvmsi_hserver *srv)
{
	int greeted = 0;
	for (;;) {
		const struct pvmsi_frame_header *h = &request.hdr;
		const struct pvmsi_hrequest *rq;
		int served, r = read_exact(srv->in_fd, &request.hdr, sizeof(request.hdr));
		if (r <= 0)
			return r == 0 ? 0 : 1;
		if (h->magic != PVMSI_HARNESS_MAGIC) { /* fatal: the stream cannot be trusted any more */
			pvmsi_hsend_error(srv->out_fd, 0, PVMSI_HSTATUS_BAD_MAGIC, 0, 0, "not a harness frame");
			return 1;
		}
		if (h->length > PVMSI_HARNESS_MAX_PAYLOAD || h->length % 8) { /* fatal: no way to find the next frame */
			pvmsi_hsend_error(srv->out_fd, h->seq, PVMSI_HSTATUS_BAD_LENGTH,
					  offsetof(struct pvmsi_frame_header, length), h->kind,
					  "payload length is not a multiple of 8 up to PVMSI_HARNESS_MAX_PAYLOAD");
			return 1;
		}
		if (h->length && read_exact(srv->in_fd, request.payload, h->length) != 1)
			return 1;
		if (h->version_major != PVMSI_HARNESS_VERSION_MAJOR) {
			if (pvmsi_hsend_error(srv->out_fd, h->seq, PVMSI_HSTATUS_BAD_VERSION,
					      offsetof(struct pvmsi_frame_header, version_major), h->kind,
					      "harness major version not implemented") < 0)
				return 1;
			continue;
		}
		rq = pvmsi_hrequest_of(h->kind);
		served = rq != NULL && (srv->role == PVMSI_HROLE_HYPERVISOR ? rq->hv : rq->guest);
		if (rq == NULL || (!served && !rq->hv && !rq->guest)) {
			if (pvmsi_hsend_error(srv->out_fd, h->seq, PVMSI_HSTATUS_UNKNOWN_KIND,
					      offsetof(struct pvmsi_frame_header, kind), h->kind,
					      "not a request this IUT serves") < 0)
				return 1;
			continue;
		}
		if (h->length < rq->fixed_size || (!rq->tail && h->length != rq->fixed_size)) {
			/* harness "Errors and the order of the checks": the first byte missing, or the first one past
			 * the kind's format */
			uint32_t at = sizeof(*h) + (h->length < rq->fixed_size ? h->length : rq->fixed_size);
			if (pvmsi_hsend_error(srv->out_fd, h->seq, PVMSI_HSTATUS_BAD_LENGTH, at, h->kind,
					      "payload length is wrong for this kind") < 0)
				return 1;
			continue;
		}
		if (!greeted && h->kind < PVMSI_HFRAME_OK && h->kind != PVMSI_HFRAME_HELLO &&
		    h->kind != PVMSI_HFRAME_BYE) {
			/* not served; the session stays open and un-greeted, a later HELLO greets it */
			if (pvmsi_hsend_error(srv->out_fd, h->seq, PVMSI_HSTATUS_NO_HELLO,
					      offsetof(struct pvmsi_frame_header, kind), h->kind,
					      "a session starts with HELLO") < 0)
				return 1;
			continue;
		}
		if (!served) {
			if (pvmsi_hsend_error(srv->out_fd, h->seq, PVMSI_HSTATUS_WRONG_ROLE,
					      offsetof(struct pvmsi_frame_header, kind), h->kind,
					      "a request of the other role") < 0)
				return 1;
			continue;
		}
		if (h->kind == PVMSI_HFRAME_HELLO) {
			if (serve_hello(srv, &request, &greeted) < 0)
				return 1;
			continue;
		}
		if (h->kind == PVMSI_HFRAME_BYE) {
			pvmsi_hframe_send(srv->out_fd, PVMSI_HFRAME_OK, h->seq, NULL, 0);
			return 0;
		}
		memset(&response, 0, offsetof(struct pvmsi_hreply, payload));
		response.kind = rq->response;
		response.detail = "";
		srv->handle(srv->ctx, &request, &response);
		r = response.status ? pvmsi_hsend_error(srv->out_fd, h->seq, response.status, response.offset, h->kind,
							response.detail)
				    : pvmsi_hframe_send(srv->out_fd, (uint16_t)response.kind, h->seq, response.payload,
							response.length);
		if (r < 0)
			return 1;
	}
}
