"""A CRI security context as core request fields: users and groups, masked paths and
which seccomp profile, with kubelet's meaning of an absent one (unconfined)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtimed.api.cri_security import container_security, seccomp_choice, user_spec
from runtimed.errors import InvalidArgument, NotFound
from runtimed.gen.runtime.v1 import api_pb2 as cri

Ctx = cri.LinuxContainerSecurityContext
Profile = cri.SecurityProfile


@pytest.mark.parametrize(
    ("ctx", "user"),
    [
        (Ctx(), ""),
        (Ctx(run_as_user=cri.Int64Value(value=0)), "0"),
        (Ctx(run_as_user=cri.Int64Value(value=1000)), "1000"),
        (
            Ctx(run_as_user=cri.Int64Value(value=1000), run_as_group=cri.Int64Value(value=50)),
            "1000:50",
        ),
        (Ctx(run_as_username="app"), "app"),
        (Ctx(run_as_username="app", run_as_group=cri.Int64Value(value=0)), "app:0"),
    ],
)
def test_user_spec(ctx: cri.LinuxContainerSecurityContext, user: str) -> None:
    assert user_spec(ctx) == user


def test_a_group_needs_a_user() -> None:
    with pytest.raises(InvalidArgument, match="run_as_group 50 is given without run_as_user"):
        user_spec(Ctx(run_as_group=cri.Int64Value(value=50)))
    with pytest.raises(InvalidArgument, match="run_as_user -1 is out of range"):
        user_spec(Ctx(run_as_user=cri.Int64Value(value=-1)))


@pytest.mark.parametrize(
    ("ctx", "choice"),
    [
        (Ctx(), ("unconfined", "")),  # kubelet sends RuntimeDefault when it wants ours
        (Ctx(seccomp=Profile(profile_type=Profile.Unconfined)), ("unconfined", "")),
        (Ctx(seccomp=Profile(profile_type=Profile.RuntimeDefault)), ("default", "")),
        (
            Ctx(seccomp=Profile(profile_type=Profile.Localhost, localhost_ref="/p/x.json")),
            ("profile", "/p/x.json"),
        ),
        (Ctx(seccomp_profile_path="runtime/default"), ("default", "")),
        (Ctx(seccomp_profile_path="docker/default"), ("default", "")),
        (Ctx(seccomp_profile_path="unconfined"), ("unconfined", "")),
        (Ctx(seccomp_profile_path="localhost//p/x.json"), ("profile", "/p/x.json")),
        # The field wins over the deprecated string.
        (
            Ctx(
                seccomp=Profile(profile_type=Profile.Unconfined),
                seccomp_profile_path="runtime/default",
            ),
            ("unconfined", ""),
        ),
    ],
)
def test_seccomp_choice(ctx: cri.LinuxContainerSecurityContext, choice: tuple[str, str]) -> None:
    assert seccomp_choice(ctx) == choice


@pytest.mark.parametrize(
    ("ctx", "message"),
    [
        (Ctx(seccomp=Profile(profile_type=Profile.Localhost)), "needs localhost_ref"),
        (Ctx(seccomp_profile_path="docker/strict"), "unknown seccomp_profile_path"),
        (Ctx(seccomp_profile_path="localhost/"), "unknown seccomp_profile_path"),
    ],
)
def test_bad_seccomp_choices(ctx: cri.LinuxContainerSecurityContext, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        seccomp_choice(ctx)


async def test_container_security_fields(tmp_path: Path) -> None:
    profile = tmp_path / "block-chmod.json"
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}],
    }
    profile.write_text(json.dumps(doc))
    fields = await container_security(
        Ctx(
            run_as_user=cri.Int64Value(value=1000),
            supplemental_groups=[1234, 5678],
            supplemental_groups_policy=cri.Strict,
            masked_paths=["/proc/version"],
            readonly_paths=["/etc"],
            capabilities=cri.Capability(add_capabilities=["SYS_ADMIN"]),
            readonly_rootfs=True,
            no_new_privs=True,
            seccomp=Profile(profile_type=Profile.Localhost, localhost_ref=str(profile)),
        )
    )
    assert fields == {
        "user": "1000",
        "read_only": True,
        "cap_add": ["SYS_ADMIN"],
        "cap_drop": [],
        "privileged": False,
        "no_new_privileges": True,
        "supplemental_groups": [1234, 5678],
        "groups_strict": True,
        "masked_paths": ["/proc/version"],
        "readonly_paths": ["/etc"],
        "seccomp": "profile",
        "seccomp_profile": doc,
    }
    # Empty lists keep our defaults (None); no seccomp field: unconfined.
    plain = await container_security(Ctx())
    assert plain["masked_paths"] is None and plain["readonly_paths"] is None
    assert plain["seccomp"] == "unconfined" and "seccomp_profile" not in plain
    assert plain["groups_strict"] is False


async def test_container_security_refusals(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    localhost = Profile(profile_type=Profile.Localhost, localhost_ref=str(missing))
    with pytest.raises(NotFound, match=str(missing)):
        await container_security(Ctx(seccomp=localhost))
    # A privileged container runs with no profile, so none is read (as containerd).
    privileged = await container_security(Ctx(seccomp=localhost, privileged=True))
    assert privileged["seccomp"] == "unconfined" and "seccomp_profile" not in privileged
    with pytest.raises(InvalidArgument, match="masked path 'proc/kcore'"):
        await container_security(Ctx(masked_paths=["proc/kcore"]))
    with pytest.raises(InvalidArgument, match="read-only path ''"):
        await container_security(Ctx(readonly_paths=[""]))
    with pytest.raises(InvalidArgument, match="supplemental group -5"):
        await container_security(Ctx(supplemental_groups=[-5]))
