"""A CRI container's LinuxContainerSecurityContext as core CreateRequest fields.

kubelet's meaning, which is containerd's: a container whose context names no
seccomp profile runs unconfined (kubelet asks for RuntimeDefault when it
wants ours); a Localhost profile is a file read when the container is
created. Masked and read-only paths, when given, replace our defaults. A
privileged container gets neither a profile nor masked paths.
"""

from __future__ import annotations

import asyncio
from typing import Any

from runtimed.errors import InvalidArgument
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.oci.seccomp_file import load_profile
from runtimed.oci.spec import (
    SECCOMP_DEFAULT,
    SECCOMP_PROFILE,
    SECCOMP_UNCONFINED,
    check_paths,
)
from runtimed.oci.user import check_id

# The deprecated seccomp_profile_path's values (besides "localhost/<path>").
_PROFILE_PATHS = {
    "": SECCOMP_UNCONFINED,
    "unconfined": SECCOMP_UNCONFINED,
    "runtime/default": SECCOMP_DEFAULT,
    "docker/default": SECCOMP_DEFAULT,
}
_LOCALHOST = "localhost/"


async def container_security(sec: cri.LinuxContainerSecurityContext) -> dict[str, Any]:
    """CreateRequest keyword arguments for `sec`; InvalidArgument or NotFound (a
    Localhost profile that is not there) before anything is made."""
    fields: dict[str, Any] = {
        "user": user_spec(sec),
        "read_only": sec.readonly_rootfs,
        "cap_add": list(sec.capabilities.add_capabilities),
        "cap_drop": list(sec.capabilities.drop_capabilities),
        "privileged": sec.privileged,
        "no_new_privileges": sec.no_new_privs,
        "supplemental_groups": [check_id(g, "supplemental group") for g in sec.supplemental_groups],
        "groups_strict": sec.supplemental_groups_policy == cri.Strict,
        "masked_paths": check_paths(sec.masked_paths, "masked") or None,
        "readonly_paths": check_paths(sec.readonly_paths, "read-only") or None,
    }
    mode, path = seccomp_choice(sec)
    if sec.privileged:
        mode, path = SECCOMP_UNCONFINED, ""  # as containerd: no profile, none read
    fields["seccomp"] = mode
    if path:
        fields["seccomp_profile"] = await asyncio.to_thread(load_profile, path)
    return fields


def user_spec(sec: cri.LinuxContainerSecurityContext) -> str:
    """The user as CreateRequest takes it: "uid", "name", "uid:gid", "name:gid" or "" (the
    image's user)."""
    user = sec.run_as_username
    if sec.HasField("run_as_user"):
        user = str(check_id(sec.run_as_user.value, "run_as_user"))
    if sec.HasField("run_as_group"):
        if not user:
            raise InvalidArgument(
                f"run_as_group {sec.run_as_group.value} is given without run_as_user or "
                "run_as_username: a group needs a user"
            )
        user += f":{check_id(sec.run_as_group.value, 'run_as_group')}"
    return user


def seccomp_choice(sec: cri.LinuxContainerSecurityContext) -> tuple[str, str]:
    """(SECCOMP_* mode, path of a Localhost profile or "")."""
    if sec.HasField("seccomp"):
        profile = sec.seccomp
        if profile.profile_type == cri.SecurityProfile.RuntimeDefault:
            return SECCOMP_DEFAULT, ""
        if profile.profile_type == cri.SecurityProfile.Unconfined:
            return SECCOMP_UNCONFINED, ""
        if profile.profile_type == cri.SecurityProfile.Localhost:
            if not profile.localhost_ref:
                raise InvalidArgument("a Localhost seccomp profile needs localhost_ref (a path)")
            return SECCOMP_PROFILE, profile.localhost_ref
        raise InvalidArgument(f"unknown seccomp profile type {profile.profile_type}")
    path = sec.seccomp_profile_path
    if path in _PROFILE_PATHS:
        return _PROFILE_PATHS[path], ""
    if path.startswith(_LOCALHOST) and len(path) > len(_LOCALHOST):
        return SECCOMP_PROFILE, path[len(_LOCALHOST) :]
    raise InvalidArgument(
        f"unknown seccomp_profile_path {path!r}: use runtime/default, unconfined or "
        "localhost/<path>"
    )
