"""runtimectl build against the real daemon: instructions, stages, cache, hostile contexts."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration

BASE = "busybox:local"


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with Daemon() as d:
        d.import_busybox(BASE)
        yield d


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def inspect(daemon: Daemon, ref: str) -> dict:
    return json.loads(daemon.ok("image", "inspect", ref).stdout)[0]


def sh(daemon: Daemon, image: str, script: str) -> str:
    return daemon.ok("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script).stdout


def build(daemon: Daemon, ctx: Path, *args: str, ok: bool = True) -> tuple[int, str, str]:
    result = daemon.ctl("build", *args, str(ctx), timeout=300)
    if ok:
        assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
    return result.returncode, result.stdout, result.stderr


def listed_ids(daemon: Daemon) -> set[str]:
    return set(daemon.ok("images", "-q", "--no-trunc").out_lines)


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def file_member(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


DOCKERFILE_ALL = """\
# syntax=docker/dockerfile:1
ARG BASE_TAG=local
FROM busybox:${BASE_TAG} AS final
MAINTAINER Jane Doe <jane@example.com>
LABEL org.example.before=${BASE_TAG}
ARG BASE_TAG
LABEL org.example.name="all the instructions" org.example.tag=${BASE_TAG}
ENV GREETING=hello NAME="big world"
ENV LEGACY old style value
ARG STAGE_ARG=from-default
EXPOSE 8080 53/udp
WORKDIR /srv/app
COPY --chown=1000:1000 --chmod=0750 *.sh ./
COPY conf/ /etc/myconf/
ADD payload.tar /opt/payload/
ADD notes.txt /opt/notes.txt
COPY <<EOF /srv/app/generated.txt
greeting=${GREETING}
EOF
RUN <<EOF
echo "stage arg is $STAGE_ARG" > /srv/app/arg.txt
echo "base tag is $BASE_TAG" >> /srv/app/arg.txt
EOF
RUN ["/bin/sh", "-c", "echo exec-form > /srv/app/exec.txt"]
RUN --network=none cat /proc/net/dev | grep -c : > /srv/app/ifaces.txt
RUN --mount=type=cache,target=/cache echo cached > /cache/x && cp /cache/x /srv/app/from-cache.txt
RUN --mount=type=bind,source=conf,target=/mnt/conf cp /mnt/conf/app.conf /srv/app/bound.conf
RUN --mount=type=tmpfs,target=/scratch touch /scratch/gone && ls /scratch > /srv/app/tmpfs.txt
SHELL ["/bin/sh", "-ec"]
RUN echo "shell is -ec" > /srv/app/shell.txt
VOLUME ["/data"]
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --retries=4 CMD test -f /srv/app/run.sh
ONBUILD RUN echo triggered > /tmp/onbuild.txt
USER 1000:1000
ENTRYPOINT ["/bin/sh", "/srv/app/run.sh"]
CMD ["default-arg"]
"""


def test_every_instruction_changes_config_and_files(daemon: Daemon, tmp_path: Path) -> None:
    payload = tar_bytes(
        [file_member("inner/one.txt", b"from the archive\n"), file_member("two.txt", b"2\n")]
    )
    ctx = write(
        tmp_path / "ctx",
        {
            "Dockerfile": DOCKERFILE_ALL,
            "run.sh": 'echo "run.sh says $GREETING $1"\n',
            "other.sh": "true\n",
            "conf/app.conf": "setting=1\n",
            "payload.tar": payload,
            "notes.txt": "plain file, not extracted\n",
        },
    )
    build(daemon, ctx, "-t", "allinst:1", "--label", "org.example.cli=yes")
    doc = inspect(daemon, "allinst:1")
    config = doc["Config"]
    assert doc["Author"] == "Jane Doe <jane@example.com>"
    assert config["Labels"] == {
        "org.example.before": "",  # a global ARG is seen in a stage only once declared there
        "org.example.name": "all the instructions",
        "org.example.tag": "local",
        "org.example.cli": "yes",
    }
    assert "GREETING=hello" in config["Env"] and "NAME=big world" in config["Env"]
    assert "LEGACY=old style value" in config["Env"]
    assert not any(e.startswith("STAGE_ARG=") for e in config["Env"])  # ARGs do not persist
    assert set(config["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert config["WorkingDir"] == "/srv/app"
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -f /srv/app/run.sh"],
        "Interval": 30_000_000_000,
        "Timeout": 5_000_000_000,
        "Retries": 4,
    }
    assert config["OnBuild"] == ["RUN echo triggered > /tmp/onbuild.txt"]
    assert config["User"] == "1000:1000"
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert config["Entrypoint"] == ["/bin/sh", "/srv/app/run.sh"]
    assert config["Cmd"] == ["default-arg"]

    files = sh(
        daemon,
        "allinst:1",
        "cd /srv/app && stat -c '%n %u:%g %a' run.sh other.sh && "
        "cat /etc/myconf/app.conf generated.txt arg.txt exec.txt from-cache.txt bound.conf "
        "shell.txt && echo ifaces=$(cat ifaces.txt) && echo tmpfs=[$(cat tmpfs.txt)] && "
        "cat /opt/payload/inner/one.txt /opt/payload/two.txt /opt/notes.txt && "
        "ls /tmp/onbuild.txt 2>&1; ls -d /scratch/gone 2>&1; true",
    )
    assert "run.sh 1000:1000 750" in files and "other.sh 1000:1000 750" in files
    for expected in (
        "setting=1",
        "greeting=hello",
        "stage arg is from-default",
        "base tag is local",
        "exec-form",
        "cached",
        "shell is -ec",
        "ifaces=1",  # --network=none: only lo
        "tmpfs=[gone]",
        "from the archive",
        "plain file, not extracted",
    ):
        assert expected in files, expected
    assert files.count("setting=1") == 2  # COPY conf/ and the bind mount's copy
    assert "No such file" in files  # ONBUILD did not run in this build; tmpfs left nothing
    out = daemon.ok("run", "--rm", "allinst:1").stdout
    assert out == "run.sh says hello default-arg\n"

    # ONBUILD runs when the image is a base.
    child = write(tmp_path / "child", {"Dockerfile": "FROM allinst:1\nUSER 0\n"})
    _, output, _ = build(daemon, child, "-t", "allinst:child")
    assert "# Executing 1 build trigger" in output
    assert sh(daemon, "allinst:child", "cat /tmp/onbuild.txt") == "triggered\n"
    assert "OnBuild" not in inspect(daemon, "allinst:child")["Config"]


def test_multi_stage_copies_one_binary_and_builds_only_needed_stages(
    daemon: Daemon, tmp_path: Path
) -> None:
    ctx = write(
        tmp_path,
        {
            "Dockerfile": (
                "FROM busybox:local AS builder\n"
                "RUN mkdir /out && printf '#!/bin/sh\\necho built by stage one\\n' > /out/hello"
                " && chmod 755 /out/hello\n"
                "FROM busybox:local AS broken\n"
                "RUN exit 7\n"
                "FROM scratch\n"
                "COPY --from=builder /bin/busybox /bin/sh\n"
                "COPY --from=0 /out/hello /hello\n"
                'ENTRYPOINT ["/hello"]\n'
            )
        },
    )
    _, output, _ = build(daemon, ctx, "-t", "multi:1")
    assert "exit 7" not in output  # the stage nobody needs is not built
    assert daemon.ok("run", "--rm", "multi:1").stdout == "built by stage one\n"
    assert len(inspect(daemon, "multi:1")["RootFS"]["Layers"]) == 2

    # --target builds that stage (and fails there, naming the step).
    code, output, err = build(daemon, ctx, "--target", "broken", ok=False)
    assert code == 1
    assert "Step 2/2 : RUN exit 7" in output
    assert "The command '/bin/sh -c exit 7' returned a non-zero code: 7" in err


def test_cache_hits_invalidation_no_cache_and_build_args(daemon: Daemon, tmp_path: Path) -> None:
    ctx = write(
        tmp_path,
        {
            "Dockerfile": (
                "FROM busybox:local\n"
                "COPY a.txt /a.txt\n"
                "RUN cat /a.txt > /copy-a\n"
                "COPY b.txt /b.txt\n"
                "ARG FLAVOR=plain\n"
                "RUN echo $FLAVOR > /flavor\n"
            ),
            "a.txt": "a1\n",
            "b.txt": "b1\n",
        },
    )
    _, first, _ = build(daemon, ctx, "-t", "cached:1")
    assert "Using cache" not in first
    image = inspect(daemon, "cached:1")["Id"]

    _, again, _ = build(daemon, ctx, "-t", "cached:1")
    assert again.count(" ---> Using cache") == 4  # every step but FROM and ARG (no image)
    assert inspect(daemon, "cached:1")["Id"] == image

    os.utime(ctx / "a.txt", (1, 1))  # mtimes do not count
    _, touched, _ = build(daemon, ctx)
    assert touched.count(" ---> Using cache") == 4

    (ctx / "b.txt").write_text("b2\n")
    _, changed, _ = build(daemon, ctx, "-t", "cached:2")
    steps = changed.split("Step ")[1:]
    assert [("Using cache" in s) for s in steps] == [False, True, True, False, False, False]
    assert sh(daemon, "cached:2", "cat /b.txt /copy-a") == "b2\na1\n"

    _, args, _ = build(daemon, ctx, "--build-arg", "FLAVOR=spicy", "-t", "cached:3")
    steps = args.split("Step ")[1:]
    assert [("Using cache" in s) for s in steps] == [False, True, True, True, False, False]
    assert sh(daemon, "cached:3", "cat /flavor") == "spicy\n"

    _, fresh, _ = build(daemon, ctx, "--no-cache")
    assert "Using cache" not in fresh

    # The cache survives a daemon restart.
    daemon.stop()
    daemon.start()
    _, restarted, _ = build(daemon, ctx, "-t", "cached:2")
    assert restarted.count(" ---> Using cache") == 4


def test_dockerignore(daemon: Daemon, tmp_path: Path) -> None:
    ctx = write(
        tmp_path,
        {
            "Dockerfile": "FROM busybox:local\nCOPY . /ctx/\n",
            ".dockerignore": "# comment\n*.log\n!keep.log\n/secret\n**/cache\nnested/*.tmp\n",
            "app.log": "x",
            "keep.log": "kept",
            "secret/key": "k",
            "deep/down/cache/blob": "c",
            "nested/a.tmp": "t",
            "nested/b.txt": "b",
            "sub/app.log": "sub-log",
        },
    )
    build(daemon, ctx, "-t", "ignored:1")
    listing = sh(daemon, "ignored:1", "cd /ctx && find . -type f | sort").split()
    assert listing == [
        "./.dockerignore",
        "./Dockerfile",
        "./keep.log",
        "./nested/b.txt",
        "./sub/app.log",  # *.log matches at the top only, as in docker
    ]
    write(tmp_path, {"Dockerfile": "FROM busybox:local\nCOPY app.log /\n"})
    code, _, err = build(daemon, ctx, ok=False)
    assert code == 1 and "app.log" in err and "not found" in err

    # A context sent as a tarball brings its own .dockerignore, applied by the daemon.
    sent = tar_bytes(
        [
            file_member("Dockerfile", b"FROM busybox:local\nCOPY . /ctx/\n"),
            file_member(".dockerignore", b"*.log\n!keep.log\nsecret\n"),
            file_member("app.log", b"x"),
            file_member("keep.log", b"kept"),
            file_member("secret/key", b"k"),
            file_member("sub/app.log", b"s"),
        ]
    )
    result = daemon.ctl("build", "-t", "ignored:tar", "-", input=sent)
    assert result.returncode == 0, result.stderr
    listing = sh(daemon, "ignored:tar", "cd /ctx && find . -type f | sort").split()
    assert listing == ["./.dockerignore", "./Dockerfile", "./keep.log", "./sub/app.log"]


def test_build_args_of_global_args_are_consumed(daemon: Daemon, tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": "ARG BASE=nothing:here\nFROM ${BASE}\nRUN true\n"})
    _, out, _ = build(daemon, ctx, "--build-arg", "BASE=busybox:local", "--build-arg", "EXTRA=1")
    # BASE was used by FROM; only EXTRA is named, as docker names it.
    assert "[Warning] One or more build-args [EXTRA] were not consumed\n" in out


def test_hostile_contexts_are_refused_or_kept_inside(daemon: Daemon, tmp_path: Path) -> None:
    outside = tmp_path / "outside-secret"
    outside.write_text("must never be read\n")
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox:local\nCOPY ../outside-secret /x\n"})
    code, _, err = build(daemon, ctx, ok=False)
    assert code == 1 and "forbidden path outside the build context" in err

    os.symlink(str(outside), ctx / "abs-link")
    os.symlink("../outside-secret", ctx / "rel-link")
    (ctx / "dir").mkdir()
    os.symlink(str(outside), ctx / "dir" / "link")
    for source in ("abs-link", "rel-link", str(outside)):
        write(ctx, {"Dockerfile": f"FROM busybox:local\nCOPY {source} /x\n"})
        code, _, err = build(daemon, ctx, ok=False)
        assert code == 1 and "not found" in err, (source, err)
    # A symlink inside a copied directory is copied as a link, never followed.
    write(ctx, {"Dockerfile": "FROM busybox:local\nCOPY dir /dir/\n"})
    build(daemon, ctx, "-t", "hostile:links")
    out = sh(daemon, "hostile:links", "readlink /dir/link; cat /dir/link 2>&1; true")
    assert out.startswith(str(outside)) and "must never be read" not in out

    # A context tarball whose members climb out is refused; nothing lands outside.
    evil = tar_bytes(
        [
            file_member("Dockerfile", b"FROM busybox:local\nCOPY . /\n"),
            file_member("../escaped-by-context", b"x"),
        ]
    )
    result = daemon.ctl("build", "-", input=evil)
    assert result.returncode == 1 and "escapes" in result.stderr
    assert not list(daemon.data_dir.parent.rglob("escaped-by-context"))

    # ADD of an archive whose members climb out is refused the same way.
    (ctx / "evil.tar").write_bytes(tar_bytes([file_member("../../../../escaped-by-add", b"x")]))
    write(ctx, {"Dockerfile": "FROM busybox:local\nADD evil.tar /opt/\n"})
    code, _, err = build(daemon, ctx, ok=False)
    assert code == 1 and "escapes" in err
    assert not list(daemon.data_dir.rglob("escaped-by-add"))

    write(ctx, {"Dockerfile": "FROM busybox:local\nADD http://127.0.0.1:1/file /file\n"})
    code, _, err = build(daemon, ctx, ok=False)
    assert code == 1 and "fetching URLs is not supported" in err


def test_failing_run_leaves_nothing_behind(daemon: Daemon, tmp_path: Path) -> None:
    before = listed_ids(daemon)
    ctx = write(
        tmp_path,
        {"Dockerfile": "FROM busybox:local\nENV A=1\nRUN echo before > /f\nRUN exit 3\nRUN true\n"},
    )
    code, output, err = build(daemon, ctx, "-t", "failed:1", ok=False)
    assert code == 1
    assert "Step 4/5 : RUN exit 3" in output
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in err
    assert "Successfully" not in output
    assert listed_ids(daemon) == before
    assert daemon.ok("ps", "-a", "-q").stdout == ""
    assert daemon.ctl("image", "inspect", "failed:1").returncode != 0


def test_a_deleted_file_keeps_its_layer_unless_in_one_run(daemon: Daemon, tmp_path: Path) -> None:
    two = write(
        tmp_path / "two",
        {
            "Dockerfile": "FROM busybox:local\n"
            "RUN dd if=/dev/zero of=/dummy bs=1M count=100 2>/dev/null\n"
            "RUN rm /dummy\n"
        },
    )
    one = write(
        tmp_path / "one",
        {
            "Dockerfile": "FROM busybox:local\n"
            "RUN dd if=/dev/zero of=/dummy bs=1M count=100 2>/dev/null && rm /dummy\n"
        },
    )
    build(daemon, two, "-t", "fat:two")
    build(daemon, one, "-t", "fat:one")
    base = inspect(daemon, BASE)["Size"]
    assert inspect(daemon, "fat:two")["Size"] - base >= 100 * 1024 * 1024
    assert inspect(daemon, "fat:one")["Size"] - base < 1024 * 1024
    assert sh(daemon, "fat:two", "ls /dummy 2>&1; true").startswith("ls:")


def test_stdin_dockerfile_quiet_iidfile_and_builder_prune(daemon: Daemon, tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    result = daemon.ctl(
        "build",
        "-q",
        "--iidfile",
        str(iid),
        "-t",
        "stdin:1",
        "-",
        input="FROM busybox:local\nRUN echo from-stdin > /s\n",
    )
    assert result.returncode == 0, result.stderr
    image_id = result.stdout.strip()
    assert image_id.startswith("sha256:") and iid.read_text() == image_id
    assert inspect(daemon, "stdin:1")["Id"] == image_id
    assert sh(daemon, "stdin:1", "cat /s") == "from-stdin\n"

    # A tarball context on stdin, with the Dockerfile inside.
    context = tar_bytes(
        [
            file_member("Dockerfile", b"FROM busybox:local\nCOPY f /f\n"),
            file_member("f", b"from the tarball\n"),
        ]
    )
    result = daemon.ctl("build", "-t", "stdin:tar", "-", input=context)
    assert result.returncode == 0, result.stderr
    assert "Successfully tagged stdin:tar" in result.stdout
    assert sh(daemon, "stdin:tar", "cat /f") == "from the tarball\n"

    # builder prune removes the step images only the cache kept; named ones stay.
    ctx = write(tmp_path / "p", {"Dockerfile": "FROM busybox:local\nENV P=1\nRUN echo p > /p\n"})
    build(daemon, ctx, "-t", "pruned:1")
    failing = "FROM busybox:local\nRUN echo f > /f\nRUN exit 1\n"
    failed = write(tmp_path / "f", {"Dockerfile": failing})
    build(daemon, failed, ok=False)
    all_before = set(daemon.ok("images", "-a", "-q", "--no-trunc").out_lines)
    pruned = daemon.ok("builder", "prune", "-f").stdout
    assert "Total reclaimed space" in pruned
    all_after = set(daemon.ok("images", "-a", "-q", "--no-trunc").out_lines)
    assert all_after < all_before
    assert daemon.ctl("image", "inspect", "pruned:1").returncode == 0
    _, output, _ = build(daemon, ctx, "-t", "pruned:1")
    # pruned:1 keeps its own parent chain; what went were step images nothing named.
    assert "Successfully tagged pruned:1" in output
