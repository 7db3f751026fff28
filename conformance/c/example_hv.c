/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * example_hv.c: an example hypervisor IUT in C for the pvmsi conformance suite, on pvmsi_harness.c.
 *
 * It models a VM's guest RAM, the pvmsi VM state (OPEN / NEGOTIATED) and the discovery, version and negotiation
 * calls of the spec for the vtd platform (x86-64): HELLO, VM_CREATE / VM_DESTROY, MEM_WRITE / MEM_READ, HYPERCALL
 * of VERSION, GET_INFO, NEGOTIATE and RESET, TRAP of CPUID and VMCALL / VMMCALL, and CONFIG_READ of its devices
 * as they are after reset (harness "Device model"). Every other request, and a
 * device or message call once the VM is NEGOTIATED, is answered ERROR UNSUPPORTED, so the suite reports the tests
 * that need it as unsupported. It passes the suite's `discovery` and `negotiation` sections:
 *
 *   pvmsi gen c-header -o pvmsi.h
 *   cc -std=c11 -Wall -Wextra -Werror -O2 -o example_hv example_hv.c pvmsi_harness.c
 *   pvmsi conformance run --role hypervisor --iut exec:./example_hv --section discovery --section negotiation
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pvmsi_harness.h"

#define MIB (1024u * 1024u)
/* What this hypervisor offers: every feature bit pvmsi 1.0 defines. */
#define OFFERED (PVMSI_F_MSI | PVMSI_F_MSIX | PVMSI_F_IMS | PVMSI_F_SUBDEVICE | PVMSI_F_POSTED)
#define KINDS (PVMSI_F_MSI | PVMSI_F_MSIX | PVMSI_F_IMS)
/* The pvmsi CPUID leaf block (HV-DISC-001 allows any base 0x40000000 + k * 0x100). */
#define CPUID_BASE PVMSI_X86_CPUID_FIRST_BASE

enum vm_state { VM_FREE, VM_OPEN, VM_NEGOTIATED };

struct vm {
	uint8_t *ram;
	uint64_t ram_bytes;
	uint64_t features;          /* in force once NEGOTIATED */
	uint64_t features_offered;  /* this VM's offer (the features_withheld knob applied) */
	uint64_t features_required; /* the features_required knob */
	struct pvmsi_device_slot devices[PVMSI_HARNESS_MAX_DEVICES];
	uint32_t id;
	uint32_t vcpus;
	uint32_t ram_mib;
	uint32_t device_count;
	uint32_t max_claimed_devices;
	uint32_t state; /* enum vm_state */
};

struct host {
	struct vm vms[PVMSI_HARNESS_MAX_VMS];
	uint32_t next_id;
	uint32_t ram_mib; /* of every VM alive */
};

/* -- the pvmsi calls ------------------------------------------------------------------------------------------- */

struct result {
	int64_t status;
	uint64_t value;
};

static struct result done(int64_t status, uint64_t value)
{
	struct result r;
	r.status = status;
	r.value = value; /* a failed call passes 0 (HV-CALL-004) */
	return r;
}

/*
 * Guest RAM (harness "Device model", "Guest RAM"): below PVMSI_HDEV_GUEST_LOW_RAM_LIMIT from 0, the rest from
 * PVMSI_HDEV_GUEST_HIGH_RAM_BASE. The host copy of [gpa, gpa + size), or NULL when that is not all RAM.
 */
static uint8_t *ram_at(const struct vm *vm, uint64_t gpa, uint64_t size)
{
	uint64_t low = vm->ram_bytes < PVMSI_HDEV_GUEST_LOW_RAM_LIMIT ? vm->ram_bytes : PVMSI_HDEV_GUEST_LOW_RAM_LIMIT;
	if (size == 0)
		return NULL;
	if (gpa < low)
		return size <= low - gpa ? vm->ram + gpa : NULL;
	if (gpa >= PVMSI_HDEV_GUEST_HIGH_RAM_BASE && gpa - PVMSI_HDEV_GUEST_HIGH_RAM_BASE < vm->ram_bytes - low &&
	    size <= vm->ram_bytes - low - (gpa - PVMSI_HDEV_GUEST_HIGH_RAM_BASE))
		return vm->ram + low + (gpa - PVMSI_HDEV_GUEST_HIGH_RAM_BASE);
	return NULL;
}

/* The memory rules of one parameter block (HV-MEM-001..003): aligned, within a page, guest RAM. */
static int block_ok(const struct vm *vm, uint64_t gpa, uint64_t size)
{
	if (gpa % PVMSI_BLOCK_ALIGN)
		return 0;
	if (gpa / PVMSI_PAGE_SIZE != (gpa + size - 1) / PVMSI_PAGE_SIZE)
		return 0;
	return ram_at(vm, gpa, size) != NULL;
}

static struct result get_info(struct vm *vm, uint64_t out_gpa)
{
	struct pvmsi_hv_info info;
	if (!block_ok(vm, out_gpa, sizeof(info)))
		return done(PVMSI_STATUS_INVALID_ADDRESS, 0);
	memset(&info, 0, sizeof(info));
	info.version_major = PVMSI_VERSION_MAJOR;
	info.version_minor = PVMSI_VERSION_MINOR;
	info.message_format = PVMSI_MSGFMT_VTD_REMAPPED;
	info.features_offered = vm->features_offered;
	info.features_required = vm->features_required;
	info.max_batch = PVMSI_MSG_FREE_MAX_BATCH;
	info.max_claimed_devices = vm->max_claimed_devices;
	info.max_messages_per_vm = 8192;
	info.max_messages_per_device = 4096;
	memcpy(ram_at(vm, out_gpa, sizeof(info)), &info, sizeof(info));
	return done(PVMSI_STATUS_SUCCESS, 0);
}

static struct result negotiate(struct vm *vm, uint64_t in_gpa, uint64_t out_gpa)
{
	struct pvmsi_negotiate_in in;
	struct pvmsi_negotiate_out out;
	int64_t status = PVMSI_STATUS_SUCCESS;
	if (!block_ok(vm, in_gpa, sizeof(in)) || !block_ok(vm, out_gpa, sizeof(out)) ||
	    (in_gpa < out_gpa + sizeof(out) && out_gpa < in_gpa + sizeof(in))) /* HV-MEM-004: disjoint */
		return done(PVMSI_STATUS_INVALID_ADDRESS, 0);
	memcpy(&in, ram_at(vm, in_gpa, sizeof(in)), sizeof(in)); /* the one read of the input block (HV-MEM-005) */
	if (in.reserved0)
		return done(PVMSI_STATUS_INVALID_PARAMETER, 0); /* HV-CONV-001 */
	if (in.version_major != PVMSI_VERSION_MAJOR || in.version_minor > PVMSI_VERSION_MINOR)
		return done(PVMSI_STATUS_VERSION_MISMATCH, 0); /* HV-NEG-001 */
	memset(&out, 0, sizeof(out));
	if (in.features & ~vm->features_offered) {
		status = PVMSI_STATUS_INVALID_PARAMETER; /* HV-NEG-002: the bits not offered, in refused */
		out.refused = in.features & ~vm->features_offered;
	} else if (!(in.features & KINDS)) {
		status = PVMSI_STATUS_INVALID_PARAMETER; /* HV-NEG-003 */
	} else if (vm->features_required & ~in.features) {
		status = PVMSI_STATUS_FEATURES_REFUSED; /* HV-NEG-004: the required bits missing, in refused */
		out.refused = vm->features_required & ~in.features;
	} else {
		out.features = in.features; /* HV-NEG-005 */
		vm->features = in.features;
		vm->state = VM_NEGOTIATED;
	}
	memcpy(ram_at(vm, out_gpa, sizeof(out)), &out, sizeof(out));
	return done(status, out.features);
}

/* What this example does not implement: a device or message call of a NEGOTIATED VM. */
#define NOT_HERE 1

/* The call table, from the spec (PVMSI_CALLS in pvmsi.h). */
struct call {
	uint32_t fn;
	uint8_t in, out, negotiated, reserved;
};
#define CALL_ROW(name, fn, in, out, negotiated) { (fn), (in), (out), (negotiated), 0 },
static const struct call CALLS[] = { PVMSI_CALLS(CALL_ROW) };

/* One pvmsi call (spec "Calling conventions"); *unsupported is set for a call this example does not serve. */
static struct result hypercall(struct vm *vm, uint32_t fn, const uint64_t args[4], int *unsupported)
{
	const struct call *c = NULL;
	size_t i;
	*unsupported = 0;
	for (i = 0; i < sizeof(CALLS) / sizeof(CALLS[0]); i++)
		if (CALLS[i].fn == fn)
			c = &CALLS[i];
	if (c == NULL)
		return done(PVMSI_STATUS_NOT_SUPPORTED, 0); /* HV-CALL-001 */
	/* HV-CALL-003: the reserved registers zero, a block address exactly where the call has a block */
	if (args[2] || args[3] || !c->in != !args[0] || !c->out != !args[1])
		return done(PVMSI_STATUS_INVALID_PARAMETER, 0);
	if (c->negotiated && vm->state != VM_NEGOTIATED)
		return done(PVMSI_STATUS_WRONG_STATE, 0); /* HV-STATE-002 */
	switch (fn) {
	case PVMSI_FN_VERSION: /* HV-DISC-003 */
		return done(PVMSI_STATUS_SUCCESS, (uint64_t)PVMSI_VERSION_MAJOR << 16 | PVMSI_VERSION_MINOR);
	case PVMSI_FN_GET_INFO: /* HV-DISC-004 */
		return get_info(vm, args[1]);
	case PVMSI_FN_NEGOTIATE:
		if (vm->state != VM_OPEN)
			return done(PVMSI_STATUS_WRONG_STATE, 0); /* HV-NEG-006 */
		return negotiate(vm, args[0], args[1]);
	case PVMSI_FN_RESET: /* HV-RESET-001: nothing allocated here, so nothing freed */
		vm->state = VM_OPEN;
		vm->features = 0;
		return done(PVMSI_STATUS_SUCCESS, 0);
	default:
		*unsupported = NOT_HERE;
		return done(PVMSI_STATUS_NOT_SUPPORTED, 0);
	}
}

/* Answer ERROR and return from the request's handler. */
#define FAIL(rsp, code, offset, detail)                          \
	do {                                                     \
		pvmsi_hreply_error((rsp), (code), (offset), (detail)); \
		return;                                          \
	} while (0)

/* -- the harness requests -------------------------------------------------------------------------------------- */

static struct vm *find_vm(struct host *host, uint32_t id)
{
	size_t i;
	for (i = 0; i < PVMSI_HARNESS_MAX_VMS; i++)
		if (host->vms[i].state != VM_FREE && host->vms[i].id == id)
			return &host->vms[i];
	return NULL;
}

/* The VM a request names, or NULL after answering ERROR UNKNOWN_VM (harness "Sessions", rule 10). */
static struct vm *vm_of(struct host *host, uint32_t id, struct pvmsi_hreply *rsp, uint32_t offset)
{
	struct vm *vm = find_vm(host, id);
	if (vm == NULL)
		pvmsi_hreply_error(rsp, PVMSI_HSTATUS_UNKNOWN_VM, offset, "no such VM in this session");
	return vm;
}

static void vm_create(struct host *host, const struct pvmsi_hframe *req, struct pvmsi_hreply *rsp)
{
	struct pvmsi_vm_config cfg;
	struct pvmsi_vm_ref ref;
	struct vm *vm = NULL;
	size_t i;
	memcpy(&cfg, req->payload, sizeof(cfg));
	if (cfg.vcpus < 1 || cfg.vcpus > PVMSI_HARNESS_MAX_VCPUS)
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_vm_config, vcpus), "vcpus out of range");
	if (cfg.ram_mib < 1 || cfg.ram_mib > PVMSI_HARNESS_MAX_RAM_MIB)
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_vm_config, ram_mib), "ram_mib out of range");
	if (cfg.device_count > PVMSI_HARNESS_MAX_DEVICES)
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_vm_config, device_count), "too many devices");
	if (req->hdr.length != sizeof(cfg) + cfg.device_count * sizeof(struct pvmsi_device_slot))
		FAIL(rsp, PVMSI_HSTATUS_BAD_LENGTH, sizeof(struct pvmsi_frame_header) + sizeof(cfg),
		     "device_count does not match the payload");
	if (cfg.features_required & ~(OFFERED & ~cfg.features_withheld))
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_vm_config, features_required),
		     "features_required is not within the offer");
	if (cfg.yield_after || cfg.remap_entries) /* knobs this example cannot honour */
		FAIL(rsp, PVMSI_HSTATUS_UNSUPPORTED, 0, "yield_after and remap_entries unsupported");
	for (i = 0; i < PVMSI_HARNESS_MAX_VMS && vm == NULL; i++)
		if (host->vms[i].state == VM_FREE)
			vm = &host->vms[i];
	if (vm == NULL || host->ram_mib + cfg.ram_mib > PVMSI_HARNESS_MAX_SESSION_RAM_MIB)
		FAIL(rsp, PVMSI_HSTATUS_LIMIT, 0, "session limit of VMs or guest RAM");
	memset(vm, 0, sizeof(*vm));
	vm->ram_bytes = (uint64_t)cfg.ram_mib * MIB;
	vm->ram = calloc(1, (size_t)vm->ram_bytes); /* zero pages: the host touches only what the guest writes */
	if (vm->ram == NULL)
		FAIL(rsp, PVMSI_HSTATUS_INTERNAL, 0, "out of host memory");
	vm->id = host->next_id++;
	vm->vcpus = cfg.vcpus;
	vm->ram_mib = cfg.ram_mib;
	vm->features_offered = OFFERED & ~cfg.features_withheld;
	vm->features_required = cfg.features_required;
	vm->max_claimed_devices = cfg.max_claimed_devices ? cfg.max_claimed_devices : 16;
	vm->device_count = cfg.device_count;
	memcpy(vm->devices, req->payload + sizeof(cfg), cfg.device_count * sizeof(struct pvmsi_device_slot));
	vm->state = VM_OPEN;
	host->ram_mib += cfg.ram_mib;
	memset(&ref, 0, sizeof(ref));
	ref.vm = vm->id;
	pvmsi_hreply_put(rsp, &ref, sizeof(ref));
}

static void vm_destroy(struct host *host, const struct pvmsi_hframe *req, struct pvmsi_hreply *rsp)
{
	struct pvmsi_vm_ref ref;
	struct vm *vm;
	memcpy(&ref, req->payload, sizeof(ref));
	vm = vm_of(host, ref.vm, rsp, PVMSI_HPAYLOAD_AT(struct pvmsi_vm_ref, vm));
	if (vm == NULL)
		return;
	host->ram_mib -= vm->ram_mib;
	free(vm->ram);
	memset(vm, 0, sizeof(*vm));
}

/* MEM_WRITE (write = 1) and MEM_READ. */
static void mem_access(struct host *host, const struct pvmsi_hframe *req, struct pvmsi_hreply *rsp, int write)
{
	struct pvmsi_mem_access acc;
	struct vm *vm;
	uint8_t *ram;
	memcpy(&acc, req->payload, sizeof(acc));
	vm = vm_of(host, acc.vm, rsp, PVMSI_HPAYLOAD_AT(struct pvmsi_mem_access, vm));
	if (vm == NULL)
		return;
	if (acc.size < 1 || acc.size > PVMSI_HARNESS_MAX_MEM_ACCESS)
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_mem_access, size), "size out of range");
	if (write && req->hdr.length != sizeof(acc) + PVMSI_HPAD8(acc.size))
		FAIL(rsp, PVMSI_HSTATUS_BAD_LENGTH, sizeof(struct pvmsi_frame_header) + sizeof(acc),
		     "the bytes do not match size");
	ram = ram_at(vm, acc.gpa, acc.size);
	if (ram == NULL)
		FAIL(rsp, PVMSI_HSTATUS_BAD_ADDRESS, PVMSI_HPAYLOAD_AT(struct pvmsi_mem_access, gpa), "not guest RAM");
	if (write)
		memcpy(ram, req->payload + sizeof(acc), acc.size);
	else
		pvmsi_hreply_put(rsp, ram, acc.size);
}

static void do_hypercall(struct host *host, const struct pvmsi_hframe *req, struct pvmsi_hreply *rsp)
{
	struct pvmsi_hypercall_req call;
	struct pvmsi_hypercall_res res;
	struct result r;
	struct vm *vm;
	int unsupported;
	memcpy(&call, req->payload, sizeof(call));
	vm = vm_of(host, call.vm, rsp, PVMSI_HPAYLOAD_AT(struct pvmsi_hypercall_req, vm));
	if (vm == NULL)
		return;
	if (call.vcpu >= vm->vcpus) /* harness "Sessions", rule 3 */
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_hypercall_req, vcpu), "the VM has no such vCPU");
	if (call.in_size || call.out_size || call.reserved0)
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_hypercall_req, in_size), "must be zero in HYPERCALL");
	r = hypercall(vm, call.function, call.args, &unsupported);
	if (unsupported)
		FAIL(rsp, PVMSI_HSTATUS_UNSUPPORTED, 0, "this example serves no device calls");
	memset(&res, 0, sizeof(res));
	res.status = r.status;
	res.value = r.value;
	pvmsi_hreply_put(rsp, &res, sizeof(res));
}

/* A 16-bit or 32-bit little-endian store into a configuration-space image. */
static void put(uint8_t *image, uint32_t at, uint32_t value, uint32_t size)
{
	uint32_t i;
	for (i = 0; i < size; i++)
		image[at + i] = (uint8_t)(value >> (8 * i));
}

/* The configuration space of a device of `profile` after reset (harness "Device model", PVMSI_HDEV_*). */
static void config_image(uint8_t profile, uint8_t *image)
{
	uint32_t vendor = 0, device = 0, msi = 0, msix = 0, first = 0;
	memset(image, 0, PVMSI_HDEV_CONFIG_SPACE_SIZE);
	if (profile == PVMSI_HPROFILE_IDXD) {
		vendor = PVMSI_HDEV_IDXD_VENDOR_ID, device = PVMSI_HDEV_IDXD_DEVICE_ID;
		msi = PVMSI_HDEV_IDXD_MSI_VECTORS, msix = PVMSI_HDEV_IDXD_MSIX_TABLE_SIZE;
	} else if (profile == PVMSI_HPROFILE_MLX5) {
		vendor = PVMSI_HDEV_MLX5_VENDOR_ID, device = PVMSI_HDEV_MLX5_DEVICE_ID;
		msi = PVMSI_HDEV_MLX5_MSI_VECTORS, msix = PVMSI_HDEV_MLX5_MSIX_TABLE_SIZE;
	} else if (profile == PVMSI_HPROFILE_PLAIN_MSI) {
		vendor = PVMSI_HDEV_PLAIN_MSI_VENDOR_ID, device = PVMSI_HDEV_PLAIN_MSI_DEVICE_ID;
		msi = PVMSI_HDEV_PLAIN_MSI_MSI_VECTORS, msix = PVMSI_HDEV_PLAIN_MSI_MSIX_TABLE_SIZE;
	}
	put(image, 0x00, vendor, 2);
	put(image, 0x02, device, 2);
	if (msix) {
		uint32_t at = PVMSI_HDEV_MSIX_CAP_OFFSET, table = msix * PVMSI_HDEV_SLOT_SIZE;
		uint32_t pages = (table + PVMSI_HDEV_BAR_PAGE - 1) / PVMSI_HDEV_BAR_PAGE; /* the PBA follows the table */
		uint32_t pba = PVMSI_HDEV_BAR_MSIX_TABLE_OFFSET + pages * PVMSI_HDEV_BAR_PAGE;
		image[at] = PVMSI_HDEV_MSIX_CAP_ID;
		put(image, at + PVMSI_HDEV_MSIX_CONTROL, msix - 1, 2); /* disabled, not function-masked */
		put(image, at + PVMSI_HDEV_MSIX_TABLE, PVMSI_HDEV_BAR_MSIX_TABLE_OFFSET, 4); /* BIR 0 */
		put(image, at + PVMSI_HDEV_MSIX_PBA, pba, 4);
		first = at;
	}
	if (msi) { /* every MSI profile has per-vector masking */
		uint32_t at = PVMSI_HDEV_MSI_CAP_OFFSET, mmc = 0;
		while ((1u << mmc) < msi)
			mmc++;
		image[at] = PVMSI_HDEV_MSI_CAP_ID;
		image[at + 1] = (uint8_t)first; /* Next Pointer: MSI-X, if any */
		put(image, at + PVMSI_HDEV_MSI_CONTROL,
		    mmc << PVMSI_HDEV_MSI_MMC_SHIFT | PVMSI_HDEV_MSI_64BIT | PVMSI_HDEV_MSI_PER_VECTOR_MASK, 2);
		first = at;
	}
	if (first) {
		put(image, PVMSI_HDEV_STATUS, PVMSI_HDEV_STATUS_CAP_LIST, 2);
		image[PVMSI_HDEV_CAP_POINTER] = (uint8_t)first;
	}
}

/* CONFIG_READ: the configuration space as the guest sees it; this example's devices stay as they reset. */
static void config_read(struct host *host, const struct pvmsi_hframe *req, struct pvmsi_hreply *rsp)
{
	static uint8_t image[PVMSI_HDEV_CONFIG_SPACE_SIZE];
	struct pvmsi_config_read rd;
	const struct pvmsi_device_slot *slot = NULL;
	struct vm *vm;
	uint32_t i;
	int known;
	memcpy(&rd, req->payload, sizeof(rd));
	vm = vm_of(host, rd.vm, rsp, PVMSI_HPAYLOAD_AT(struct pvmsi_config_read, vm));
	if (vm == NULL)
		return;
	if (rd.size == 0 || rd.size % 4 || rd.size > PVMSI_HDEV_CONFIG_SPACE_SIZE)
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD, PVMSI_HPAYLOAD_AT(struct pvmsi_config_read, size), "bad size");
	if (rd.offset % 4 || rd.offset > PVMSI_HDEV_CONFIG_SPACE_SIZE - rd.size)
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD, PVMSI_HPAYLOAD_AT(struct pvmsi_config_read, offset), "bad offset");
	for (i = 0; i < vm->device_count; i++)
		if (vm->devices[i].segment == rd.device.segment && vm->devices[i].bus == rd.device.bus &&
		    vm->devices[i].devfn == rd.device.devfn)
			slot = &vm->devices[i];
	if (slot != NULL && rd.device.flags == PVMSI_DEVID_SUBDEVICE) /* a sub-device reads its function's space */
		known = slot->profile == PVMSI_HPROFILE_IDXD && rd.device.subdevice_id >= 1 &&
			rd.device.subdevice_id <= PVMSI_HDEV_IDXD_SUBDEVICES;
	else
		known = slot != NULL && rd.device.flags == 0 && rd.device.subdevice_id == 0;
	if (!known)
		FAIL(rsp, PVMSI_HSTATUS_UNKNOWN_DEVICE, 0, "no such device in this VM");
	config_image(slot->profile, image);
	pvmsi_hreply_put(rsp, image + rd.offset, rd.size);
}

/* TRAP: CPUID and VMCALL / VMMCALL on x86-64 (spec "Calling conventions", "Discovery"). */
static void trap(struct host *host, const struct pvmsi_hframe *req, struct pvmsi_hreply *rsp)
{
	struct pvmsi_trap_req t;
	struct pvmsi_trap_res res;
	struct vm *vm;
	uint64_t *regs = res.regs; /* rax, rbx, rcx, rdx, rsi, rdi, r8, r9 */
	memcpy(&t, req->payload, sizeof(t));
	vm = vm_of(host, t.vm, rsp, PVMSI_HPAYLOAD_AT(struct pvmsi_trap_req, vm));
	if (vm == NULL)
		return;
	if (t.vcpu >= vm->vcpus)
		FAIL(rsp, PVMSI_HSTATUS_BAD_PAYLOAD,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_trap_req, vcpu), "the VM has no such vCPU");
	if (t.arch != PVMSI_HARCH_X86_64)
		FAIL(rsp, PVMSI_HSTATUS_UNSUPPORTED,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_trap_req, arch), "this example is an x86-64 hypervisor");
	memset(&res, 0, sizeof(res));
	memcpy(res.regs, t.regs, sizeof(res.regs));
	res.handled = 1;
	if (t.instruction == PVMSI_HTRAP_CPUID) {
		uint32_t leaf = (uint32_t)regs[0];
		regs[0] = regs[1] = regs[2] = regs[3] = 0;
		if (leaf == CPUID_BASE) { /* HV-DISC-001: the signature, and the block's highest leaf in EAX */
			regs[0] = CPUID_BASE + 1;
			regs[1] = PVMSI_X86_CPUID_SIGNATURE_EBX;
			regs[2] = PVMSI_X86_CPUID_SIGNATURE_ECX;
			regs[3] = PVMSI_X86_CPUID_SIGNATURE_EDX;
		} else if (leaf == CPUID_BASE + 1) { /* HV-ABI-005: the version and the NATIVE path */
			regs[0] = (uint64_t)PVMSI_VERSION_MAJOR << 16 | PVMSI_VERSION_MINOR;
			regs[1] = PVMSI_X86_PATH_NATIVE;
		}
	} else if (t.instruction == PVMSI_HTRAP_VMCALL || t.instruction == PVMSI_HTRAP_VMMCALL) {
		struct result r;
		int unsupported;
		if ((regs[0] & ~(uint64_t)0xFF) != PVMSI_X86_CALL_BASE) {
			res.handled = 0; /* not a pvmsi call */
		} else if (t.privilege) {
			regs[0] = (uint64_t)PVMSI_X86_CPL_REFUSED; /* HV-ABI-001: not run from CPL > 0 */
		} else {
			r = hypercall(vm, (uint32_t)(regs[0] & 0xFF), &regs[1], &unsupported);
			if (unsupported)
				FAIL(rsp, PVMSI_HSTATUS_UNSUPPORTED, 0, "this example serves no device calls");
			regs[0] = (uint64_t)r.status;
			regs[1] = r.value;
		}
	} else {
		FAIL(rsp, PVMSI_HSTATUS_UNSUPPORTED,
		     PVMSI_HPAYLOAD_AT(struct pvmsi_trap_req, instruction), "not an x86-64 instruction");
	}
	pvmsi_hreply_put(rsp, &res, sizeof(res));
}

static void handle(void *ctx, const struct pvmsi_hframe *req, struct pvmsi_hreply *rsp)
{
	struct host *host = ctx;
	switch (req->hdr.kind) {
	case PVMSI_HFRAME_VM_CREATE:
		vm_create(host, req, rsp);
		return;
	case PVMSI_HFRAME_VM_DESTROY:
		vm_destroy(host, req, rsp);
		return;
	case PVMSI_HFRAME_MEM_WRITE:
		mem_access(host, req, rsp, 1);
		return;
	case PVMSI_HFRAME_MEM_READ:
		mem_access(host, req, rsp, 0);
		return;
	case PVMSI_HFRAME_HYPERCALL:
		do_hypercall(host, req, rsp);
		return;
	case PVMSI_HFRAME_TRAP:
		trap(host, req, rsp);
		return;
	case PVMSI_HFRAME_CONFIG_READ:
		config_read(host, req, rsp);
		return;
	default:
		pvmsi_hreply_error(rsp, PVMSI_HSTATUS_UNSUPPORTED, 0, "not implemented by this example");
	}
}

static struct host host;

int main(void)
{
	struct pvmsi_hserver srv;
	memset(&srv, 0, sizeof(srv));
	srv.handle = handle;
	srv.ctx = &host;
	srv.name = "c-example";
	srv.in_fd = STDIN_FILENO;
	srv.out_fd = STDOUT_FILENO;
	srv.role = PVMSI_HROLE_HYPERVISOR;
	host.next_id = 1;
	return pvmsi_hserve(&srv);
}
