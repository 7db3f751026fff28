"""Requirements of the sections Conventions, Calling conventions, Discovery, Status codes and Versioning."""

from __future__ import annotations

from .model import Level, Requirement, req

CONVENTIONS: tuple[Requirement, ...] = (
    req(
        "GEN-CONV-001",
        Level.MUST,
        "conventions",
        "Every multi-byte field of every parameter block MUST be encoded little-endian, whatever the byte "
        "order the guest runs in.",
    ),
    req(
        "GEN-CONV-002",
        Level.MUST,
        "conventions",
        "A reserved field MUST be written as zero by whoever writes the block: the guest in input blocks, the "
        "hypervisor in output blocks.",
    ),
    req(
        "GEN-CONV-003",
        Level.MUST,
        "conventions",
        "A bit of a flags field that this version does not define MUST be written as zero.",
    ),
    req(
        "HV-CONV-001",
        Level.MUST,
        "conventions",
        "The hypervisor MUST fail a call whose input block has a non-zero reserved field or a set undefined bit "
        "of a flag field with INVALID_PARAMETER, and MUST NOT act on any part of it. A field of feature bits "
        "(negotiate_in.features) is not a flag field: NEGOTIATE reports the bits it did not offer, undefined ones "
        "included, in negotiate_out.refused (HV-NEG-002).",
    ),
    req(
        "HV-CONV-002",
        Level.MUST,
        "conventions",
        "The hypervisor MUST fail a call whose input block carries an enumerated field with a value this "
        "version does not define with INVALID_PARAMETER.",
    ),
    req(
        "GUEST-CONV-001",
        Level.MUST_NOT,
        "conventions",
        "After a call failed, the guest MUST NOT rely on its output block, except the batch_out header and the "
        "results below next_index of a batch whose batch_out was written, and negotiate_out of a NEGOTIATE that "
        "failed with FEATURES_REFUSED or INVALID_PARAMETER. A failed batch call wrote batch_out (an entry "
        "failed) exactly when all of these hold (HV-BATCH-007): the value register equals batch_out.next_index, "
        "start <= next_index < count, batch_out.completed equals next_index - start, and batch_out.status is the "
        "status returned. Otherwise it failed before writing batch_out (in its header checks): it completed no "
        "entry, and its value register means nothing.",
    ),
)

CALLING: tuple[Requirement, ...] = (
    req(
        "GEN-CALL-001",
        Level.MUST,
        "calling",
        "Guest and hypervisor MUST use the calling convention of the architecture as specified: the trap "
        "instruction, the function id register and encoding, the four argument registers, the status register "
        "and the value register.",
    ),
    req(
        "HV-CALL-001",
        Level.MUST,
        "calling",
        "The hypervisor MUST return PVMSI_STATUS_NOT_SUPPORTED for a function number it does not implement, and "
        "MUST NOT change any state for it.",
    ),
    req(
        "HV-CALL-002",
        Level.MUST_NOT,
        "calling",
        "The hypervisor MUST NOT return PVMSI_STATUS_NOT_SUPPORTED for any reason other than an unimplemented "
        "function number (the -1 in rax of an x86-64 call from CPL > 0 is not a pvmsi status: that call is not "
        "run, HV-ABI-001).",
    ),
    req(
        "HV-CALL-003",
        Level.MUST,
        "calling",
        "The hypervisor MUST fail with INVALID_PARAMETER a call with a non-zero argument register that the call "
        "defines as reserved, or with a zero block address where the call takes a block.",
    ),
    req(
        "HV-CALL-004",
        Level.MUST,
        "calling",
        "The hypervisor MUST preserve every guest register that the calling convention lists as preserved, and "
        "MUST return zero in the value register of a call that fails, except a batch call that wrote batch_out, "
        "whose value register is next_index (HV-BATCH-007); a batch that fails in a header check writes "
        "nothing and returns zero.",
    ),
    req(
        "HV-CALL-005",
        Level.MUST,
        "calling",
        "The hypervisor MUST run a call's checks in the order of that call's numbered check order and return the "
        "status of the first failed check: function number, argument registers, VM state, block addresses, "
        "block contents, then the call's own checks; for a batch the header checks (the header's address and "
        "contents, count and start, the device, its claim, the addresses of both whole blocks, in that order), "
        "then each entry's checks from start. A failure writes only what its step of the order says.",
    ),
    req(
        "HV-CALL-006",
        Level.MUST,
        "calling",
        "On x86-64 the hypervisor MUST accept both VMCALL and VMMCALL as the trap instruction, whatever the "
        "processor vendor.",
    ),
    req(
        "GUEST-CALL-001",
        Level.MUST,
        "calling",
        "The guest MUST set every argument register the call defines as reserved to zero.",
    ),
    req(
        "GUEST-CALL-002",
        Level.SHOULD,
        "calling",
        "On x86-64 the guest SHOULD use VMCALL on Intel and VMMCALL on AMD processors.",
    ),
)

DISCOVERY: tuple[Requirement, ...] = (
    req(
        "HV-DISC-001",
        Level.MUST,
        "discovery",
        "A hypervisor that implements pvmsi on x86-64 MUST expose the pvmsi CPUID leaf block, at a base in "
        "0x40000000..0x4000FF00 in steps of 0x100, whose base leaf returns the signature 'PVMSIPVMSIPV' in EBX, "
        "ECX and EDX, and whose base + 1 leaf returns the highest implemented version in EAX.",
    ),
    req(
        "HV-DISC-002",
        Level.MUST,
        "discovery",
        "On riscv64 a hypervisor that implements pvmsi MUST answer SBI probe_extension(0x0850564D) with a "
        "non-zero value.",
    ),
    req(
        "HV-DISC-003",
        Level.MUST,
        "discovery",
        "The hypervisor MUST answer VERSION in every state with the highest version it implements, encoded "
        "major << 16 | minor, and the same value every time during the life of the VM.",
    ),
    req(
        "HV-DISC-004",
        Level.MUST,
        "discovery",
        "The hypervisor MUST answer GET_INFO in every state, with features_required a subset of "
        "features_offered, max_batch at least 1 and at most the largest max_batch of the batch calls (MSG_FREE's), "
        "and the same answer every time while the VM runs on one host; after a live migration the limits may "
        "differ, and then the destination queues LIMITS_CHANGED (HV-MIG-004).",
    ),
    req(
        "GUEST-DISC-001",
        Level.MUST_NOT,
        "discovery",
        "The guest MUST NOT issue any other pvmsi call before discovery has shown that pvmsi is present.",
    ),
    req(
        "GUEST-DISC-002",
        Level.MUST,
        "discovery",
        "The guest MUST treat pvmsi as absent, and keep using emulated MSI and MSI-X, when discovery fails or "
        "VERSION reports a major version it does not implement.",
    ),
)

STATUS: tuple[Requirement, ...] = (
    req(
        "GEN-STAT-001",
        Level.MUST,
        "status",
        "The status register MUST hold a signed 64-bit value: zero for success, a positive value for a "
        "non-error outcome defined by the call, a negative value for an error.",
    ),
    req(
        "HV-STAT-001",
        Level.MUST,
        "status",
        "The hypervisor MUST return only status codes this version defines, each with its defined meaning.",
    ),
    req(
        "HV-STAT-002",
        Level.MUST,
        "status",
        "The hypervisor MUST return INVALID_ADDRESS for a block address that breaks a memory rule, and "
        "INVALID_PARAMETER, NOT_PERMITTED, WRONG_STATE, UNKNOWN_DEVICE and UNKNOWN_HANDLE only for the conditions "
        "this specification gives them.",
    ),
    req(
        "GUEST-STAT-001",
        Level.MUST,
        "status",
        "The guest MUST check the status of every call and MUST treat an unknown negative status as a failure "
        "of the call.",
    ),
    req(
        "GUEST-STAT-002",
        Level.MUST,
        "status",
        "A guest under test MUST answer the harness as its appendix defines: each command's outcome in "
        "guest_result (SUCCESS for a command done and for a BOOT that falls back to emulation, the mode saying "
        "so; otherwise the status of the call that made it fail, as returned; when no call failed, INVALID_ADDRESS "
        "when the guest refused a pair under GUEST-CVM-002 and INVALID_PARAMETER when it refused an answer under "
        "GUEST-REFUSE-002; done in vectors, an MSI block of n "
        "vectors counting n), and an ERROR frame of the code the appendix names for a request it cannot serve.",
    ),
)

VERSIONING: tuple[Requirement, ...] = (
    req(
        "GEN-VER-001",
        Level.MUST,
        "versioning",
        "A new minor version MUST only add function numbers, feature bits, status codes and constants; it MUST "
        "NOT change the layout or meaning of an existing format, call or constant.",
    ),
    req(
        "GEN-VER-002",
        Level.MUST,
        "versioning",
        "A change of a format's layout MUST be published as a new call with a new function number; the old "
        "call keeps its format.",
    ),
    req(
        "HV-VER-001",
        Level.MUST,
        "versioning",
        "A hypervisor that implements minor version N of a major version MUST implement every call of minor "
        "versions 0..N of it, and every feature of them that it offers in hv_info.features_offered; a feature it "
        "does not implement it MUST NOT offer (the optional features are those of the conformance statement).",
    ),
    req(
        "GEN-EXT-001",
        Level.MAY,
        "versioning",
        "An implementation MAY define vendor extensions, using only the vendor range of each number space: function "
        "numbers 0xC0 to 0xFF, feature bits 48 to 63, message formats 0x80 to 0xFF and event types 0x8000 to "
        "0xFFFF, which no version of pvmsi allocates; it gives no other number, and no status code, a meaning "
        "this specification does not define.",
    ),
    req(
        "HV-VER-002",
        Level.MUST,
        "versioning",
        "The hypervisor MUST answer a function number of the vendor range that it does not implement as any "
        "undefined one: NOT_SUPPORTED, value 0, nothing changed.",
    ),
    req(
        "HV-VER-003",
        Level.MUST,
        "versioning",
        "A hypervisor without vendor extensions MUST answer PVMSI_FN_VENDOR_ID (0xC0) with NOT_SUPPORTED and MUST "
        "NOT offer a vendor feature bit or report a vendor message format; one with vendor extensions MUST answer "
        "PVMSI_FN_VENDOR_ID, called with every argument register zero, with SUCCESS and its PCI-SIG vendor ID in "
        "bits 15:0 of the value, bits 63:16 zero.",
    ),
    req(
        "HV-VER-004",
        Level.MUST_NOT,
        "versioning",
        "The hypervisor MUST NOT put a feature bit of the vendor range in features_required.",
    ),
    req(
        "HV-VER-005",
        Level.MUST_NOT,
        "versioning",
        "The hypervisor MUST NOT offer a feature bit outside the vendor range that the version it implements does not "
        "define (GEN-EXT-001 reserves every such bit for later versions).",
    ),
    req(
        "GUEST-VER-001",
        Level.MUST,
        "versioning",
        "The guest MUST ignore bits of features_offered that it does not know.",
    ),
    req(
        "GUEST-VER-002",
        Level.MUST_NOT,
        "versioning",
        "The guest MUST NOT negotiate a minor version higher than the one VERSION reported, nor one higher than it "
        "implements: it asks for the lower of the two.",
    ),
    req(
        "GUEST-EXT-001",
        Level.MUST_NOT,
        "versioning",
        "The guest MUST NOT accept in NEGOTIATE a feature bit of the vendor range (48 to 63), nor issue a function "
        "of the vendor range other than PVMSI_FN_VENDOR_ID, unless it implements that vendor's extensions and "
        "PVMSI_FN_VENDOR_ID returned that vendor's ID; a vendor bit offered by a hypervisor it does not know the "
        "extensions of it ignores, like any bit it does not know (GUEST-VER-001).",
    ),
    req(
        "GUEST-EXT-002",
        Level.MUST,
        "versioning",
        "The guest MUST treat an event type or message format of the vendor range that it does not know as unknown, "
        "never as one of pvmsi's (by its low bits or otherwise): such an event it skips and acknowledges, changing "
        "nothing it holds (GUEST-EVT-001), and such a message_format it accepts in GET_INFO and goes on with pvmsi, "
        "writing every pair exactly as returned (GUEST-FMT-001).",
    ),
)

REQUIREMENTS: tuple[Requirement, ...] = CONVENTIONS + CALLING + DISCOVERY + STATUS + VERSIONING
