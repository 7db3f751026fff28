/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * pvmsi_harness.h: a small C library for the pvmsi conformance-harness protocol (spec appendix "Conformance
 * harness protocol"), for implementers who do not use pvmsi's Python package.
 *
 * It frames and parses harness messages with the generated header (`pvmsi gen c-header -o pvmsi.h`) and runs a
 * session by the appendix's rules: framing errors, HELLO first, roles, each request's payload size, one response
 * per request, BYE. What is left to the IUT is one handler that serves the requests of its role.
 *
 * Build: cc -std=c11 -Wall -Wextra -Werror -c pvmsi_harness.c (pvmsi.h beside it).
 * The wire structs are little-endian and used as they are: the library refuses to build on a big-endian host.
 */
#ifndef PVMSI_HARNESS_H
#define PVMSI_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "pvmsi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One frame: the header, then up to PVMSI_HARNESS_MAX_PAYLOAD bytes of payload. */
struct pvmsi_hframe {
	struct pvmsi_frame_header hdr;
	uint8_t payload[PVMSI_HARNESS_MAX_PAYLOAD];
};

/*
 * What a handler answers. The library presets `kind` to the request's response kind (RESPONSE_OF) and `length`
 * to 0. To answer with a response, leave `status` 0 and write `length` bytes (a multiple of 8) to `payload`
 * (pvmsi_hreply_put helps). To answer ERROR, call pvmsi_hreply_error.
 */
struct pvmsi_hreply {
	const char *detail;
	uint32_t status; /* 0, or a PVMSI_HSTATUS_* code: the answer is an ERROR frame */
	uint32_t offset; /* ERROR: byte offset in the request frame (header included) of the offending field */
	uint32_t kind;   /* the response kind (PVMSI_HFRAME_*) */
	uint32_t length; /* payload bytes of the response */
	uint8_t payload[PVMSI_HARNESS_MAX_PAYLOAD];
};

/* Serves one request of the IUT's role (every request but HELLO and BYE, which the library serves). */
typedef void pvmsi_hhandler(void *ctx, const struct pvmsi_hframe *req, struct pvmsi_hreply *rsp);

/* One session on a pair of file descriptors. */
struct pvmsi_hserver {
	pvmsi_hhandler *handle;
	void *ctx;
	const char *name; /* what HELLO_ACK names, ASCII, at most 8 bytes */
	int in_fd;
	int out_fd;
	uint8_t role; /* PVMSI_HROLE_* the IUT plays */
	uint8_t reserved[7];
};

/* What the spec says of one request kind (from PVMSI_HARNESS_REQUESTS). */
struct pvmsi_hrequest {
	uint16_t kind;
	uint16_t response;
	uint32_t fixed_size; /* bytes of its fixed payload format */
	uint8_t tail;        /* 0: nothing follows; 1: entries; 2: bytes (padded to 8) */
	uint8_t hv;          /* a hypervisor IUT serves it */
	uint8_t guest;       /* a guest IUT serves it */
	uint8_t reserved;
};

/* Offset of a payload field within the frame (header included), as ERROR's `offset` wants it. */
#define PVMSI_HPAYLOAD_AT(type, member) ((uint32_t)(sizeof(struct pvmsi_frame_header) + offsetof(type, member)))
/* A length rounded up to a multiple of 8, as every payload is. */
#define PVMSI_HPAD8(n) (((n) + 7u) & ~7u)

/* The request `kind`, or NULL when it is not a request the protocol defines. */
const struct pvmsi_hrequest *pvmsi_hrequest_of(uint16_t kind);

/* Reads one frame: 1 done, 0 end of input before its first byte, -1 error or end of input inside it.
 * Checks nothing but that the payload fits `f` (a longer one is -1 after its header). */
int pvmsi_hframe_read(int fd, struct pvmsi_hframe *f);
/* Writes one frame; 0, or -1 on a write error. */
int pvmsi_hframe_send(int fd, uint16_t kind, uint32_t seq, const void *payload, uint32_t length);
/* Writes an ERROR frame with a one-line detail (at most 248 bytes of it). */
int pvmsi_hsend_error(int fd, uint32_t seq, uint32_t code, uint32_t offset, uint16_t request_kind, const char *detail);

/* A handler's answers. */
void pvmsi_hreply_error(struct pvmsi_hreply *rsp, uint32_t code, uint32_t offset, const char *detail);
/* Appends `n` bytes to the response payload, padding it with zeros to a multiple of 8. */
void pvmsi_hreply_put(struct pvmsi_hreply *rsp, const void *data, uint32_t n);

/*
 * Runs a session until BYE, the end of input or a fatal framing error. Returns 0 after BYE or the end of input
 * between frames, 1 after a fatal error (bad magic, a length not a multiple of 8 or too long) or a broken stream.
 * A request before HELLO is answered NO_HELLO and not served; the session goes on (harness "Sessions", rule 1).
 */
int pvmsi_hserve(const struct pvmsi_hserver *srv);

#ifdef __cplusplus
}
#endif

#endif /* PVMSI_HARNESS_H */
