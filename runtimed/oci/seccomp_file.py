"""Seccomp profiles from files: Docker's profile format and the OCI one.

A Kubernetes `Localhost` profile is a JSON file in Docker's format (what
kubelet's documentation and the security-profiles-operator write), which is
the OCI `linux.seccomp` object plus a few conveniences: `archMap` (per native
architecture, the architectures to add), `name` for a single syscall, and
`includes`/`excludes` that keep a rule only for some architectures, some
held capabilities or some kernel versions. A plain OCI object is the special
case without them. As in Docker and containerd, fields not known here are
ignored. `load_profile` reads and checks a file when the container
is created; `profile_to_oci` resolves it against the container's
capabilities when its config.json is written.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import stat
from collections.abc import Iterable
from typing import Any

from runtimed.errors import InvalidArgument, NotFound

MAX_PROFILE = 1 << 20

ACTIONS = frozenset(
    [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ]
)
OPERATORS = frozenset(
    [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ]
)
FLAGS = frozenset(
    [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ]
)
# The top-level keys of an OCI linux.seccomp object, kept as they are.
_OCI_KEYS = ("defaultAction", "defaultErrnoRet", "flags", "listenerPath", "listenerMetadata")

# platform.machine() -> libseccomp's architecture name (what includes.arches say)
# and its SCMP_ARCH_* constant (what archMap's "architecture" says).
_NATIVE = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}


def load_profile(path: str) -> dict[str, Any]:
    """The profile document in the file at `path`, checked (see profile_to_oci).

    NotFound if there is no such file; InvalidArgument, naming the path, if it
    cannot be read or is no valid profile.
    """
    if not path.startswith("/"):
        raise InvalidArgument(f"seccomp profile path {path!r} must be an absolute path")
    try:
        # O_NONBLOCK: a FIFO put there must not hang the request.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise NotFound(f"seccomp profile {path} not found") from None
    except OSError as exc:
        hint = " (runtimed reads it as its own user)" if exc.errno == errno.EACCES else ""
        raise InvalidArgument(f"cannot read seccomp profile {path}: {exc.strerror}{hint}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgument(f"seccomp profile {path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_PROFILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PROFILE:
        raise InvalidArgument(f"seccomp profile {path} is larger than {MAX_PROFILE} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"seccomp profile {path} is not valid JSON: {exc}") from None
    try:
        profile_to_oci(doc, ())
    except InvalidArgument as exc:
        raise InvalidArgument(f"seccomp profile {path}: {exc.message}") from None
    return doc


def profile_to_oci(
    doc: Any,
    capabilities: Iterable[str],
    *,
    machine: str | None = None,
    kernel: str | None = None,
) -> dict[str, Any]:
    """The OCI linux.seccomp object for profile `doc`, for a container holding
    `capabilities` (CAP_* names) on `machine` (platform.machine()) running
    `kernel` (os.uname().release). InvalidArgument says what is wrong."""
    if not isinstance(doc, dict):
        raise InvalidArgument("a seccomp profile is a JSON object")
    native, native_const = _NATIVE.get(machine or platform.machine(), ("", ""))
    release = _version(kernel or os.uname().release)
    caps = set(capabilities)

    out: dict[str, Any] = {"defaultAction": _action(doc.get("defaultAction"), "defaultAction")}
    for key in _OCI_KEYS[1:]:
        if key in doc:
            out[key] = doc[key]
    _int(out.get("defaultErrnoRet", 0), "defaultErrnoRet")
    for flag in _strings(doc.get("flags", []), "flags"):
        if flag not in FLAGS:
            raise InvalidArgument(f"unknown seccomp flag {flag!r}")
    if not isinstance(out.get("listenerPath", ""), str) or not isinstance(
        out.get("listenerMetadata", ""), str
    ):
        raise InvalidArgument("listenerPath and listenerMetadata must be strings")
    arches = _architectures(doc, native_const)
    if arches:
        out["architectures"] = arches

    rules = doc.get("syscalls", [])
    if not isinstance(rules, list):
        raise InvalidArgument("syscalls must be a list")
    syscalls = []
    for i, rule in enumerate(rules):
        converted = _rule(rule, f"syscalls[{i}]", caps, native, release)
        if converted is not None:
            syscalls.append(converted)
    if syscalls:
        out["syscalls"] = syscalls
    return out


def _architectures(doc: dict[str, Any], native_const: str) -> list[str]:
    if "architectures" in doc and "archMap" in doc:
        raise InvalidArgument("give either architectures or archMap, not both")
    if "architectures" in doc:
        return _strings(doc["architectures"], "architectures")
    arch_map = doc.get("archMap", [])
    if not isinstance(arch_map, list):
        raise InvalidArgument("archMap must be a list")
    out: list[str] = []
    for entry in arch_map:
        if not isinstance(entry, dict) or not isinstance(entry.get("architecture"), str):
            raise InvalidArgument("every archMap entry needs an architecture")
        subs = _strings(entry.get("subArchitectures") or [], "subArchitectures")
        if entry["architecture"] == native_const:
            out = [native_const, *subs]
    return out


def _rule(
    rule: Any, where: str, caps: set[str], native: str, release: tuple[int, ...]
) -> dict[str, Any] | None:
    if not isinstance(rule, dict):
        raise InvalidArgument(f"{where} must be an object")
    if "name" in rule and "names" in rule:
        raise InvalidArgument(f"{where}: give either name or names, not both")
    names = [rule["name"]] if "name" in rule else rule.get("names")
    names = _strings(names, f"{where}.names")
    if not names or any(not n for n in names):
        raise InvalidArgument(f"{where} names no syscall")
    out: dict[str, Any] = {"names": names, "action": _action(rule.get("action"), where)}
    if "errnoRet" in rule:
        out["errnoRet"] = _int(rule["errnoRet"], f"{where}.errnoRet")
    args = rule.get("args") or []
    if not isinstance(args, list):
        raise InvalidArgument(f"{where}.args must be a list")
    if args:
        out["args"] = [_arg(a, f"{where}.args[{i}]") for i, a in enumerate(args)]
    includes = _filter(rule.get("includes"), f"{where}.includes")
    excludes = _filter(rule.get("excludes"), f"{where}.excludes")
    # A rule for other architectures, capabilities or kernels is left out.
    if includes["arches"] and native not in includes["arches"]:
        return None
    if not set(includes["caps"]) <= caps:
        return None
    if includes["minKernel"] and release < includes["minKernel"]:
        return None
    if native in excludes["arches"] or set(excludes["caps"]) & caps:
        return None
    if excludes["minKernel"] and release >= excludes["minKernel"]:
        return None
    return out


def _filter(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where} must be an object")
    min_kernel = value.get("minKernel") or ""
    if not isinstance(min_kernel, str):
        raise InvalidArgument(f"{where}.minKernel must be a string such as '5.8'")
    return {
        "caps": _strings(value.get("caps") or [], f"{where}.caps"),
        "arches": _strings(value.get("arches") or [], f"{where}.arches"),
        "minKernel": _version(min_kernel, where) if min_kernel else (),
    }


def _arg(arg: Any, where: str) -> dict[str, Any]:
    if not isinstance(arg, dict):
        raise InvalidArgument(f"{where} must be an object")
    index = _int(arg.get("index"), f"{where}.index")
    if not 0 <= index <= 5:
        raise InvalidArgument(f"{where}.index {index} is not a syscall argument (0 to 5)")
    if arg.get("op") not in OPERATORS:
        raise InvalidArgument(f"{where}: unknown operator {arg.get('op')!r}")
    out = {"index": index, "value": _u64(arg.get("value"), f"{where}.value"), "op": arg["op"]}
    if "valueTwo" in arg:
        out["valueTwo"] = _u64(arg["valueTwo"], f"{where}.valueTwo")
    return out


def _action(value: Any, where: str) -> str:
    if value not in ACTIONS:
        raise InvalidArgument(f"{where}: unknown seccomp action {value!r}")
    return value


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{where} must be a non-negative integer")
    return value


def _u64(value: Any, where: str) -> int:
    if _int(value, where) >= 1 << 64:
        raise InvalidArgument(f"{where} does not fit in 64 bits")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where} must be a list of strings")
    return list(value)


def _version(text: str, where: str = "kernel release") -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = ""
        for c in part:
            if not c.isdigit():
                break
            digits += c
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise InvalidArgument(f"{where}: {text!r} is not a kernel version such as '5.8'")
    return tuple(parts)
