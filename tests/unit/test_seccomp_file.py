"""Seccomp profiles from files: Docker's format resolved for an architecture, a set of
capabilities and a kernel; the OCI format passed through; bad files refused by path."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from runtimed.errors import InvalidArgument, NotFound
from runtimed.oci.seccomp_file import load_profile, profile_to_oci

DOCKER_STYLE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {
            "architecture": "SCMP_ARCH_X86_64",
            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        },
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
        {"name": "arch_prctl", "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {"names": ["clone3"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.3"}},
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    ],
}


def names(profile: dict[str, Any]) -> list[str]:
    return [n for rule in profile.get("syscalls", []) for n in rule["names"]]


def test_docker_format_resolved_for_the_host() -> None:
    out = profile_to_oci(DOCKER_STYLE, [], machine="x86_64", kernel="6.1.0-13-amd64")
    assert out["defaultAction"] == "SCMP_ACT_ERRNO" and out["defaultErrnoRet"] == 1
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert names(out) == ["read", "write", "arch_prctl", "clone", "clone3", "chmod"]
    clone = out["syscalls"][2]
    assert clone["args"] == [
        {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    assert out["syscalls"][-1] == {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
    assert all(set(rule) <= {"names", "action", "errnoRet", "args"} for rule in out["syscalls"])


def test_rules_follow_capabilities_architecture_and_kernel() -> None:
    admin = profile_to_oci(DOCKER_STYLE, ["CAP_SYS_ADMIN"], machine="x86_64", kernel="6.1")
    assert "mount" in names(admin) and "clone" not in names(admin)
    arm_old = profile_to_oci(DOCKER_STYLE, [], machine="aarch64", kernel="5.2.9")
    assert arm_old["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert names(arm_old) == ["read", "write", "clone", "chmod"]


def test_oci_format_passes_through() -> None:
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert profile_to_oci(doc, [], machine="x86_64") == doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "JSON object"),
        ({}, "unknown seccomp action None"),
        ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown seccomp action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "syscalls must be a list"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [], "archMap": []},
            "either architectures or archMap",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]},
            "syscalls\\[0\\].names must be a list",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}],
            },
            "either name or names",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["a"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "op": "x"}]}
                ],
            },
            "index 6",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["a"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ROUGHLY"}],
                    }
                ],
            },
            "unknown operator",
        ),
        ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": -1}, "non-negative"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["NOPE"]}, "unknown seccomp flag"),
    ],
)
def test_bad_profiles_are_refused(doc: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        profile_to_oci(doc, [], machine="x86_64")


def test_load_profile_reads_and_checks_a_file(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(DOCKER_STYLE))
    assert load_profile(str(good)) == DOCKER_STYLE

    with pytest.raises(NotFound, match=f"{tmp_path}/missing.json not found"):
        load_profile(str(tmp_path / "missing.json"))
    with pytest.raises(InvalidArgument, match="absolute"):
        load_profile("profiles/good.json")

    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    with pytest.raises(InvalidArgument, match=f"{bad_json} is not valid JSON"):
        load_profile(str(bad_json))

    bad_action = tmp_path / "bad-action.json"
    bad_action.write_text('{"defaultAction": "SCMP_ACT_SOMETIMES"}')
    with pytest.raises(InvalidArgument, match=f"{bad_action}: .*unknown seccomp action"):
        load_profile(str(bad_action))

    with pytest.raises(InvalidArgument, match="not a regular file"):
        load_profile(str(tmp_path))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        load_profile(str(fifo))  # and does not hang waiting for a writer

    huge = tmp_path / "huge.json"
    huge.write_text(" " * (1 << 20) + json.dumps(DOCKER_STYLE))
    with pytest.raises(InvalidArgument, match="larger than"):
        load_profile(str(huge))


def test_load_profile_names_an_unreadable_file(tmp_path: Path) -> None:
    # The suite runs as an ordinary user (root would read it whatever its mode).
    locked = tmp_path / "locked.json"
    locked.write_text(json.dumps(DOCKER_STYLE))
    locked.chmod(0)
    with pytest.raises(InvalidArgument, match=f"cannot read seccomp profile {locked}"):
        load_profile(str(locked))
