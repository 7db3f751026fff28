"""The fuzzer's inputs: calls built from the model's state, so that they mostly reach the deep checks, with
attacks and mutations mixed in (spec "Security considerations": the other VM's and the other device's handles,
guessed and malformed handles, occupied slots; "Memory rules": bad block addresses; "Batching and partial
completion": resumed batches)."""

from __future__ import annotations

import random
from collections.abc import Iterable

from ..spec.calls import CALLS_BY_FN
from ..spec.constants import FunctionNumber, Limit, MsgKind, group
from ..spec.fastcodec import fast
from ..spec.kinds import kind_bit
from ..spec.layout import format_layout
from .fuzz_state import DeviceKey, VmModel

PAGE = int(Limit.PAGE_SIZE)
SCRATCH = 0x20000
OUT = SCRATCH + 2048
_ENTRY = {
    FunctionNumber.MSG_ALLOC: fast("alloc_entry"),
    FunctionNumber.MSG_ACTIVATE: fast("activate_entry"),
    FunctionNumber.MSG_FREE: fast("free_entry"),
    FunctionNumber.MSG_DEACTIVATE: fast("deactivate_entry"),
}
_BATCH_IN = fast("batch_in")


def _undefined_flag_bits(name: str) -> list[tuple[int, int]]:
    """Every (byte offset, bit) of format ``name`` that lies in a flags field but is no flag its constant group
    defines: a set one is INVALID_PARAMETER (HV-CONV-001)."""
    out = []
    for leaf in format_layout(name).leaves():
        if leaf.field.flags is None:
            continue
        defined = 0
        for _name, value, _doc in group(leaf.field.flags).members:
            defined |= value
        out += [(leaf.offset + b // 8, b % 8) for b in range(leaf.size * 8) if not defined >> b & 1]
    return out


#: The undefined flag bits of every input format the fuzzer writes.
_UNDEFINED_BITS = {
    name: _undefined_flag_bits(name)
    for name in (
        "batch_in",
        "alloc_entry",
        "activate_entry",
        "deactivate_entry",
        "free_entry",
        "claim_in",
        "event_config_in",
    )
}


def device_id(key: DeviceKey) -> tuple[int, int, int, int, int, int]:
    """A device identity's fields (spec format device_id): the SUBDEVICE flag when the key names a sub-device."""
    seg, bus, devfn, sub = key
    return (seg, bus, devfn, 0 if sub is None else 1, sub or 0, 0)


class Generator:
    """Builds inputs from a random stream and the model's view of each VM."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        #: The last batch a VM issued and where it stopped: (vm id, fn, block, next_index), for resumes.
        self.last: tuple[int, int, bytes, int] | None = None

    # -- addresses and registers ---------------------------------------------------------------------------
    def gpa(self, base: int) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.9:
            return base
        if r < 0.92:
            return base + rng.randrange(1, 8)  # misaligned
        if r < 0.94:
            return SCRATCH + PAGE - 8 * rng.randrange(1, 8)  # near the page end: larger blocks cross it
        if r < 0.96:
            return rng.choice((0xFEE00000, 0x80_0000_0000, (16 << 20) - 8, 1 << 40))  # not RAM
        if r < 0.97:
            return 0
        if r < 0.99:
            return SCRATCH + 8 * rng.randrange(0, 512)  # anywhere in the page: may overlap the other block
        return self.rng.getrandbits(64)

    def regs(self) -> tuple[int, int]:
        r = self.rng.random()
        return (0, 0) if r < 0.97 else (self.rng.getrandbits(64), 0) if r < 0.985 else (0, 1 << self.rng.randrange(64))

    # -- devices and handles -------------------------------------------------------------------------------
    def key(self, m: VmModel, claimed: bool = True) -> DeviceKey:
        rng = self.rng
        r = rng.random()
        if claimed and m.claims and r < 0.85:
            return rng.choice(list(m.claims))
        devices = list(m.devices()) or [(0, 0, 0x08, None)]
        if r < 0.93:
            return rng.choice(devices)
        seg, bus, devfn, sub = rng.choice(devices)
        return rng.choice(
            (
                (seg ^ 1, bus, devfn, sub),  # another segment: another device
                (seg, bus, devfn, (sub or 1) | 1 << 20),  # bits above 19
                (seg, bus, devfn, 9),  # no such sub-device
                (seg, bus, devfn, None if sub else 1),  # the parent of a sub-device, or a sub-device of it
                (rng.getrandbits(16), rng.getrandbits(8), rng.getrandbits(8), None),
            )
        )

    def handle(self, m: VmModel, key: DeviceKey, others: list[VmModel], taken: set[int]) -> int:
        rng = self.rng
        own = [h for h, x in m.messages.items() if x.device == key and h not in taken]
        r = rng.random()
        if r < 0.78 and own:
            return rng.choice(own)
        if r < 0.85:
            elsewhere = [h for h, x in m.messages.items() if x.device != key]
            if elsewhere:
                return rng.choice(elsewhere)  # held for another device of the VM (HV-RETGT-001, HV-FREE-001)
        if r < 0.93:
            foreign = [h for o in others for h in o.messages]
            if foreign:
                return rng.choice(foreign)  # another VM's (HV-SEC-003)
        if r < 0.96 and m.issued:
            return rng.choice(list(m.issued)) ^ (1 << rng.randrange(32))  # a guessed neighbour
        if r < 0.98:
            return rng.getrandbits(32)  # counter half zero: malformed, never issued (HV-STAT-002)
        return rng.getrandbits(64)

    # -- batches -------------------------------------------------------------------------------------------
    def batch(self, m: VmModel, others: list[VmModel], fn: int, valid: bool) -> tuple[bytes, int, int, tuple[int, int]]:
        """A batch input block for ``fn``, its block addresses and the reserved registers."""
        rng = self.rng
        last = self.last
        if not valid and last is not None and last[:2] == (m.vm_id, fn) and rng.random() < 0.5:
            block = self.resume(m, others, fn, last[2], last[3])
            if block is not None:
                return block, SCRATCH, OUT, (0, 0)
        key = self.key(m) if not valid else rng.choice(list(m.claims)) if m.claims else self.key(m)
        cap = m.config.max_batch
        count = min(cap, rng.choice((1, 1, 2, 4, 8, 16, rng.randrange(1, 65))))
        if not valid and rng.random() < 0.03:
            count = rng.choice((0, cap + 1, 65))
        start = 0 if valid or rng.random() < 0.9 else rng.randrange(0, count + 1)
        entries = self.entries(m, others, fn, key, count, valid)
        if not valid and entries and rng.random() < 0.05:  # one undefined flag bit in one entry (HV-CONV-001)
            i = rng.randrange(len(entries))
            entries[i] = self.undefined_bit(entries[i], _ENTRY[fn].name)  # type: ignore[index]
        block = _BATCH_IN.struct.pack(*device_id(key), count, start, 0, 0) + b"".join(entries)
        if not valid and rng.random() < 0.08:
            block = self.mutate(block)
        if valid:
            return block, SCRATCH, OUT, (0, 0)
        return block, self.gpa(SCRATCH), self.gpa(OUT), self.regs()

    def resume(self, m: VmModel, others: list[VmModel], fn: int, block: bytes, next_index: int) -> bytes | None:
        """The same batch from where it stopped, the entry there built afresh (spec "Batching": a guest fixes
        the failing entry and resumes at next_index)."""
        count = int.from_bytes(block[16:18], "little")
        if not 0 < next_index < count or len(block) < 32 + count * _ENTRY[fn].size:  # type: ignore[index]
            return None
        fmt = _ENTRY[fn]  # type: ignore[index]
        key: DeviceKey = (
            int.from_bytes(block[0:2], "little"),
            block[2],
            block[3],
            int.from_bytes(block[8:12], "little") if block[4] & 1 else None,
        )
        (entry,) = self.entries(m, others, fn, key, 1, True)
        at = 32 + next_index * fmt.size
        buf = bytearray(block)
        buf[18:20] = next_index.to_bytes(2, "little")
        buf[at : at + fmt.size] = entry
        return bytes(buf)

    def entries(
        self, m: VmModel, others: list[VmModel], fn: int, key: DeviceKey, count: int, valid: bool
    ) -> list[bytes]:
        rng = self.rng
        fmt = _ENTRY[fn]  # type: ignore[index]
        out: list[bytes] = []
        if fn == FunctionNumber.MSG_ALLOC:
            claim = m.claims.get(key)
            dev = m.devices().get(key)
            kinds = [k for k in (1, 2, 3) if claim and claim.kinds & kind_bit(k)] or [2]
            used = set(claim.slots) if claim else set()
            for _ in range(count):
                kind = rng.choice(kinds) if valid or rng.random() < 0.93 else rng.choice((0, 1, 2, 3, 4))
                limit = dev.limit(kind) if dev and 1 <= kind <= 3 else 8
                n, slot = 1, 0
                if kind == MsgKind.MSI:
                    n = rng.choice([c for c in (1, 2, 4, 8, 16, 32) if c <= max(limit, 1)])
                    if not valid and rng.random() < 0.05:
                        n = rng.choice((3, 64, 0))
                else:
                    free = [s for s in range(min(limit, 128)) if (kind, s) not in used]
                    slot = rng.choice(free) if free else 0
                    if not valid and rng.random() < 0.08:
                        slot = rng.choice([s for k, s in used if k == kind] or [limit, 5000])
                used.add((kind, slot))
                vcpu = rng.randrange(m.vcpus) if valid or rng.random() < 0.97 else m.vcpus
                vector = rng.randrange(32, 257 - n) if valid or rng.random() < 0.97 else rng.choice((0, 31, 250))
                flags = int(rng.random() < 0.1)
                alloc_flags = 1 if valid or rng.random() < 0.5 else 0  # one step, or a reservation (HV-ACT-001)
                if not alloc_flags and (valid or rng.random() < 0.9):
                    vcpu = vector = flags = 0
                hint = 0
                if rng.random() < 0.15:  # a locality hint (HV-ACT-002..004)
                    alloc_flags |= 2
                    hint = rng.randrange(m.vcpus) if rng.random() < 0.9 else m.vcpus
                elif not valid and rng.random() < 0.02:
                    hint = 1
                out.append(fmt.struct.pack(kind, flags, n, slot, vcpu, vector, alloc_flags, 0, 0, hint))
        else:
            taken: set[int] = set()
            for _ in range(count):
                h = self.handle(m, key, others, taken)
                if rng.random() < 0.97:
                    taken.add(h)
                if fn == FunctionNumber.MSG_FREE:
                    out.append(fmt.struct.pack(h))
                    continue
                x = m.messages.get(h)
                n = x.count if x else 1
                block = n == 1 or rng.random() < 0.6  # the whole message, or one vector of a block (HV-MSI-001)
                index = 0 if block else rng.randrange(n)
                if rng.random() < 0.03:
                    index = rng.choice((n, 1))  # beyond the message, or non-zero with BLOCK (HV-ACT-007)
                if fn == FunctionNumber.MSG_DEACTIVATE:
                    out.append(fmt.struct.pack(h, index, int(block), 0, 0))
                    continue
                span = n if block else 1
                vcpu = rng.randrange(m.vcpus) if rng.random() < 0.97 else m.vcpus
                vector = rng.randrange(32, 257 - span) if rng.random() < 0.97 else rng.choice((0, 31, 250))
                out.append(fmt.struct.pack(h, vcpu, vector, int(rng.random() < 0.1), int(block), index, 0))
        return out

    def undefined_bit(self, raw: bytes, name: str, at: int = 0) -> bytes:
        """``raw`` (format ``name`` at offset ``at``) with one bit set that its flags fields leave undefined."""
        bits = _UNDEFINED_BITS[name]
        if not bits:
            return raw
        offset, bit = self.rng.choice(bits)
        out = bytearray(raw)
        out[at + offset] |= 1 << bit
        return bytes(out)

    def mutate(self, raw: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            r, i = rng.random(), rng.randrange(len(buf))
            if r < 0.5:
                buf[i] ^= 1 << rng.randrange(8)
            elif r < 0.8:
                buf[i] = rng.getrandbits(8)
            elif r < 0.9:
                buf[16:18] = rng.randrange(0, 70).to_bytes(2, "little")  # count
            else:
                buf[18:20] = rng.randrange(0, 70).to_bytes(2, "little")  # start
        if rng.random() < 0.1:
            del buf[rng.randrange(len(buf)) :]
        return bytes(buf)

    # -- the other calls -----------------------------------------------------------------------------------
    def other_call(self, m: VmModel, models: Iterable[VmModel]) -> tuple[int, bytes, tuple[int, int, int, int]]:
        """A call other than a well-formed message batch: discovery, negotiation, device calls, RESET, undefined
        function numbers, message calls in the wrong state."""
        rng = self.rng
        r = rng.random()
        if m.state.name == "OPEN" and rng.random() < 0.5:
            fn = int(FunctionNumber.NEGOTIATE if rng.random() < 0.8 else FunctionNumber.RESET)
        elif r < 0.04:
            fn = rng.randrange(0, 256)
        elif r < 0.05:
            fn = rng.getrandbits(64)
        elif r < 0.07:
            fn = int(FunctionNumber.RESET)
        else:
            fn = int(
                rng.choice(
                    (
                        FunctionNumber.VERSION,
                        FunctionNumber.GET_INFO,
                        FunctionNumber.NEGOTIATE,
                        FunctionNumber.DEVICE_QUERY,
                        FunctionNumber.DEVICE_QUERY,
                        FunctionNumber.DEVICE_CLAIM,
                        FunctionNumber.DEVICE_CLAIM,
                        FunctionNumber.DEVICE_RELEASE,
                        FunctionNumber.MSG_ALLOC,
                        FunctionNumber.MSG_FREE,
                        FunctionNumber.EVENT_CONFIG,
                        FunctionNumber.EVENT_FETCH,
                        FunctionNumber.EVENT_ACK,
                    )
                )
            )
        call = CALLS_BY_FN.get(fn)
        key = self.key(m, claimed=rng.random() < 0.3)
        block = b""
        if call is not None and call.input is not None:
            if call.input == "negotiate_in":
                feats = rng.getrandbits(6) if rng.random() < 0.4 else m.config.features_offered & rng.getrandbits(5)
                minor = 0 if rng.random() < 0.9 else rng.choice((1, 0xFFFF))
                block = fast("negotiate_in").struct.pack(1 if rng.random() < 0.95 else 2, minor, 0, feats)
            elif call.input == "device_id":
                block = fast("device_id").struct.pack(*device_id(key))
            elif call.input == "event_config_in":
                enable = rng.random() < 0.7
                vcpu, vector = (rng.randrange(m.vcpus + 1), rng.randrange(20, 260)) if enable else (0, 0)
                flags = int(enable) if rng.random() < 0.95 else rng.getrandbits(32)
                block = fast("event_config_in").struct.pack(flags, vcpu, vector, 0)
                if rng.random() < 0.05:
                    block = self.undefined_bit(block, "event_config_in")
            elif call.input == "event_ack_in":
                block = fast("event_ack_in").struct.pack(rng.randrange(0, 6), 0)
            elif call.input == "claim_in":
                dev = m.devices().get(key)
                kinds = dev.kinds if dev and rng.random() < 0.6 else rng.getrandbits(4)
                block = fast("claim_in").struct.pack(*device_id(key), kinds, 0)
                if rng.random() < 0.05:
                    block = self.undefined_bit(block, "claim_in")
            else:
                block = _BATCH_IN.struct.pack(*device_id(key), 1, 0, 0, 0) + self.entries(m, [], fn, key, 1, True)[0]
            if rng.random() < 0.08:
                block = self.mutate(block) if len(block) >= 32 else bytes(b ^ (1 << rng.randrange(8)) for b in block)
        in_gpa = self.gpa(SCRATCH) if call is None or call.input is not None else 0
        out = SCRATCH + PAGE if fn == FunctionNumber.EVENT_FETCH else OUT  # its output is a whole page
        out_gpa = self.gpa(out) if call is None or call.output is not None else 0
        if rng.random() < 0.03:
            in_gpa, out_gpa = out_gpa, in_gpa  # a block where the call has none, or none where it has one
        return fn, block, (in_gpa, out_gpa, *self.regs())
