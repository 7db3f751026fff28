"""Faults of the VM state machine and feature negotiation (spec "VM state", "Negotiation")."""

from __future__ import annotations

from collections.abc import Sequence

from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.config import HypervisorConfig
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.ports import RemapPort, VmPort
from ...reference.hypervisor.vmstate import VmPvmsi
from ...spec.calls import CallDef
from ...spec.constants import DeliveryFlag, Feature, FunctionNumber, Status
from ...spec.states import VmEvent, VmState
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add("accept-unoffered-features", "HV-NEG-002", "NEGOTIATE accepts feature bits it never offered")
class AcceptUnofferedFeatures(HypervisorCore):
    def unoffered_features(self, c: Call, features: int) -> int:
        return 0


@faults.add("ignore-required-features", "HV-NEG-004", "NEGOTIATE accepts a subset without a required feature")
class IgnoreRequiredFeatures(HypervisorCore):
    def missing_features(self, c: Call, features: int) -> int:
        return 0


@faults.add("renegotiate", "HV-NEG-006", "a second NEGOTIATE replaces the features in force")
class Renegotiate(HypervisorCore):
    def check_state(self, call: CallDef, st: VmPvmsi) -> None:
        if call.fn is FunctionNumber.NEGOTIATE and st.state is VmState.NEGOTIATED:
            st.move(VmEvent.RESET_CALL)
            st.features = 0
        super().check_state(call, st)


@faults.add("no-state-check", "HV-STATE-002", "device and message calls work before NEGOTIATE")
class NoStateCheck(HypervisorCore):
    def check_state(self, call: CallDef, st: VmPvmsi) -> None:
        if call.needs_negotiation:
            st.features = st.features or st.config.features_offered
            return
        super().check_state(call, st)


@faults.add("state-per-vcpu", "HV-STATE-001", "keeps the negotiation state per vCPU: other vCPUs of the VM stay OPEN")
class StatePerVcpu(HypervisorCore):
    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        super().__init__(config, remap)
        self.per_vcpu: dict[tuple[int, int], tuple[VmState, int]] = {}

    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        st = self.state_of(vm)
        st.state, st.features = self.per_vcpu.get((vm.vm_id, vcpu), (VmState.OPEN, 0))
        r = super().hypercall(vm, vcpu, fn, args)
        self.per_vcpu[(vm.vm_id, vcpu)] = (st.state, st.features)
        return r


@faults.add("minor-unchecked", "HV-NEG-001", "NEGOTIATE checks version_major only, accepting any version_minor")
class MinorUnchecked(HypervisorCore):
    def check_version(self, c: Call, major: int, minor: int) -> None:
        super().check_version(c, major, min(minor, c.st.config.version_minor))


@faults.add(
    "kindless-features-accepted",
    "HV-NEG-003",
    "NEGOTIATE accepts a feature set without any message-kind bit (MSI, MSIX, IMS)",
)
class KindlessFeaturesAccepted(HypervisorCore):
    def names_a_kind(self, features: int) -> bool:
        return True


@faults.add(
    "negotiate-value-zero", "HV-NEG-005", "an accepted NEGOTIATE returns 0 in the value register, not the features"
)
class NegotiateValueZero(HypervisorCore):
    def negotiate(self, c: Call) -> CallResult:
        r = super().negotiate(c)
        return r._replace(value=0) if r.status == Status.SUCCESS else r


@faults.add(
    "posted-withdrawn",
    "HV-NEG-007",
    "accepts POSTED, then drops it from the features in force (the host lacks posted interrupts)",
)
class PostedWithdrawn(HypervisorCore):
    def accept_features(self, c: Call, features: int) -> None:
        super().accept_features(c, features & ~int(Feature.POSTED))


@faults.add("posted-unchecked", "HV-NEG-008", "MSG_ALLOC accepts the POSTED flag when POSTED was not negotiated")
class PostedUnchecked(HypervisorCore):
    def check_target(self, c: Call, vcpu: int, vector: int, count: int, flags: int) -> None:
        if not c.st.features & Feature.POSTED:
            flags &= ~int(DeliveryFlag.POSTED)
        super().check_target(c, vcpu, vector, count, flags)
