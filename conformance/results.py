"""The result model of a conformance run (pydantic), from which the JSON report and its schema come."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

#: How the message of a test that was not carried out starts (its verdict is ``error``): the IUT was dead or the
#: run's deadline had passed (docs/conformance-guide.md, "A dead IUT, and the run's deadline").
NOT_RUN = "not run: "


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNSUPPORTED = "unsupported"
    ERROR = "error"
    TIMEOUT = "timeout"


class TestResult(BaseModel):
    """The verdict of one test."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    test: str = Field(description="Test id: module::function.")
    role: str = Field(description="hypervisor or guest: the role of the implementation under test.")
    section: str = Field(description="Spec section of the first requirement the test checks.")
    requirements: list[str] = Field(description="Requirement ids the test checks.")
    levels: list[str] = Field(default_factory=list, description="Level of each requirement, in the same order.")
    verdict: Verdict
    duration_s: float
    message: str = Field("", description="Why it failed or was unsupported: expected vs actual.")
    transcript: list[str] = Field(default_factory=list, description="Calls and answers, in order.")


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    pass_: int = Field(0, alias="pass")
    fail: int = 0
    unsupported: int = 0
    error: int = 0
    timeout: int = 0

    def add(self, verdict: Verdict) -> None:
        attr = "pass_" if verdict is Verdict.PASS else verdict.value
        setattr(self, attr, getattr(self, attr) + 1)

    @property
    def ok(self) -> bool:
        return self.fail == 0 and self.error == 0 and self.timeout == 0


class Report(BaseModel):
    """A whole run: what ran against what, the summary and every result."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_serialization_defaults_required=True)

    spec_version: str
    role: str
    iut: str
    implementation: str = ""
    complete: bool = Field(True, description="False when the run was interrupted: results hold what finished.")
    started: str = ""
    duration_s: float = 0.0
    summary: Summary
    results: list[TestResult]
