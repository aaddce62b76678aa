"""The builder's pure parts: Dockerfile parsing, substitution, patterns, stages, config."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from runtimed.build import config as cfg
from runtimed.build import copy as cp
from runtimed.build import dockerfile as df
from runtimed.build.cache import cache_key
from runtimed.build.patterns import IgnoreRules, go_match
from runtimed.build.shellwords import expand_word, expand_words
from runtimed.build.stages import needed_stages, plan
from runtimed.errors import InvalidArgument


def test_directives_escape_continuations_and_comments() -> None:
    parsed = df.parse(
        "# syntax=docker/dockerfile:1\n"
        "# escape=`\n"
        "FROM busybox\n"
        "RUN echo a `\n"
        "  # dropped inside a continuation\n"
        "\n"
        "  b\n"
        "# a comment\n"
        "run echo c\\d\n"
    )
    assert parsed.escape == "`"
    assert parsed.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    run1, run2 = parsed.instructions[1:]
    assert (run1.keyword, run1.args, run1.line) == ("RUN", "echo a   b", 4)
    assert (run2.keyword, run2.args) == ("RUN", "echo c\\d")


def test_directives_only_at_the_top() -> None:
    parsed = df.parse("FROM busybox\n# escape=`\nRUN echo \\\n  x\n")
    assert parsed.escape == "\\"
    assert parsed.instructions[1].args == "echo   x"
    with pytest.raises(InvalidArgument, match="only one escape"):
        df.parse("# escape=`\n# escape=\\\nFROM x\n")
    with pytest.raises(InvalidArgument, match="invalid escape token"):
        df.parse("# escape=!\nFROM x\n")


def test_flags_json_form_and_unknown_instruction() -> None:
    parsed = df.parse(
        "FROM --platform=linux/amd64 busybox AS b\n"
        "COPY --from=b --chown=1:2 a /b\n"
        'CMD ["sh", "-c", "x"]\n'
    )
    frm, copy_, cmd = parsed.instructions
    assert frm.flag("platform") == "linux/amd64" and frm.args == "busybox AS b"
    assert copy_.flags == [("from", "b"), ("chown", "1:2")] and copy_.args == "a /b"
    assert cmd.json_args == ["sh", "-c", "x"]
    with pytest.raises(InvalidArgument, match="unknown instruction: FORM"):
        df.parse("FORM busybox\n")


def test_heredocs() -> None:
    parsed = df.parse(
        "FROM busybox\n"
        "RUN <<EOF\necho one\necho two\nEOF\n"
        "COPY <<-'A' <<B /dst/\n\tliteral $X\n\tA\nexpanded $X\nB\n"
        "RUN cat <<EOF > /x\nhello\nEOF\n"
    )
    run, copy_, run2 = parsed.instructions[1:]
    assert run.heredocs[0].content == "echo one\necho two\n"
    a, b = copy_.heredocs
    assert (a.name, a.content, a.expand, a.chomp) == ("A", "literal $X\n", False, True)
    assert (b.name, b.content, b.expand) == ("B", "expanded $X\n", True)
    assert run2.heredocs[0].content == "hello\n"
    with pytest.raises(InvalidArgument, match="unterminated heredoc"):
        df.parse("FROM x\nRUN <<EOF\nnever ends\n")


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "a"),
        ("${A}b", "ab"),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${A:+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("'$A'", "$A"),
        ('"$A b"', "a b"),
        ("\\$A", "$A"),
        ("${A:-${B}}", "a"),
        ("${UNSET:-$B}", "b"),
        ("cost$", "cost$"),
    ],
)
def test_substitution(word: str, expected: str) -> None:
    env = {"A": "a", "B": "b", "EMPTY": ""}
    assert expand_word(word, env) == expected


def test_word_splitting_and_required_variables() -> None:
    env = {"X": "one two"}
    assert expand_words('$X "three four" f\\ g', env) == ["one", "two", "three four", "f g"]
    assert expand_words('""', env) == [""]
    with pytest.raises(InvalidArgument, match="NOPE: must be set"):
        expand_word("${NOPE:?must be set}", env)


def test_go_filepath_match() -> None:
    assert go_match("*.txt", "a.txt") and not go_match("*.txt", "dir/a.txt")
    assert go_match("file?.md", "file1.md") and not go_match("file?.md", "file10.md")
    assert go_match("[a-c]*", "beta") and not go_match("[^a-c]*", "beta")
    assert go_match("\\*", "*") and not go_match("\\*", "a")
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        go_match("[", "x")


def test_dockerignore_rules() -> None:
    rules = IgnoreRules.parse(
        "# comment\n*.log\n!keep.log\n/build\n**/tmp\ndocs/**/*.md\nsecret*\n!secret-ok\n"
    )
    cases = {
        "x.log": True,
        "keep.log": False,
        "sub/x.log": False,  # *.log is for the top only, as in docker
        "build": True,
        "build/out/a": True,  # a matched directory covers everything below
        "a/b/tmp": True,
        "tmp/x": True,
        "docs/a.md": True,
        "docs/x/y/a.md": True,
        "docs/a.txt": False,
        "secret.key": True,
        "secret-ok": False,
        "src/main.py": False,
    }
    for path, ignored in cases.items():
        assert rules.ignored(path) is ignored, path
    assert not IgnoreRules.parse("build\n").may_reinclude_below("build")
    assert IgnoreRules.parse("build\n!build/keep\n").may_reinclude_below("build")


def test_stages_and_target_pruning() -> None:
    parsed = df.parse(
        "ARG TAG=local\n"
        "FROM busybox:${TAG} AS base\n"
        "FROM busybox:${TAG} AS unused\nRUN exit 1\n"
        "FROM base AS tool\nRUN echo\n"
        "FROM scratch\nCOPY --from=tool /x /x\n"
    )
    the_plan = plan(parsed, {"TAG": "v2"}, {})
    assert [s.base for s in the_plan.stages] == ["busybox:v2", "busybox:v2", "base", "scratch"]
    stages, final = needed_stages(the_plan, "", parsed.escape)
    assert [s.index for s in stages] == [0, 2, 3] and final.index == 3
    stages, final = needed_stages(the_plan, "unused", parsed.escape)
    assert [s.index for s in stages] == [1]
    with pytest.raises(InvalidArgument, match="could not be found"):
        needed_stages(the_plan, "nope", parsed.escape)
    with pytest.raises(InvalidArgument, match="only ARG may come before it"):
        plan(df.parse("RUN x\nFROM y\n"), {}, {})


def test_config_instructions() -> None:
    config: dict = {"Cmd": ["sh"]}
    image: dict = {}
    env = {"V": "1.0"}

    def apply(text: str, cmd_set: bool = False) -> None:
        inst = df.parse_instruction_line(text)
        cfg.apply(inst, config, image, env, "\\", cmd_set=cmd_set)

    apply('ENV A=1 B="two words" C=$V')
    apply("ENV OLD legacy form")
    apply('LABEL "com.example.v"="$V" other=x')
    apply("EXPOSE 80 53/udp 8000-8001")
    apply("USER app:app")
    apply("WORKDIR /srv")
    apply("WORKDIR sub")
    apply('VOLUME ["/data", "/logs"]')
    apply("STOPSIGNAL SIGQUIT")
    apply("ENTRYPOINT /bin/app")
    apply('SHELL ["/bin/sh", "-ec"]')
    apply("CMD run it", cmd_set=True)
    apply("HEALTHCHECK --interval=5s --retries=2 CMD test -f /ok")
    apply("ONBUILD RUN echo triggered")
    apply("MAINTAINER someone <a@b>")
    assert config["Env"] == ["A=1", "B=two words", "C=1.0", "OLD=legacy form"]
    assert config["Labels"] == {"com.example.v": "1.0", "other": "x"}
    assert set(config["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}
    assert config["User"] == "app:app" and config["WorkingDir"] == "/srv/sub"
    assert set(config["Volumes"]) == {"/data", "/logs"}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Entrypoint"] == ["/bin/sh", "-c", "/bin/app"]
    assert config["Cmd"] == ["/bin/sh", "-ec", "run it"]  # SHELL applies to later shell forms
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -f /ok"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    assert config["OnBuild"] == ["RUN echo triggered"]
    assert image["author"] == "someone <a@b>"
    with pytest.raises(InvalidArgument, match="isn't allowed as an ONBUILD trigger"):
        apply("ONBUILD FROM x")
    with pytest.raises(InvalidArgument):
        apply("STOPSIGNAL NOTASIGNAL")


def test_entrypoint_clears_an_inherited_cmd_only() -> None:
    config: dict = {"Cmd": ["sh"]}
    cfg.apply(df.parse_instruction_line('ENTRYPOINT ["x"]'), config, {}, {}, "\\", cmd_set=False)
    assert "Cmd" not in config
    config = {"Cmd": ["mine"]}
    cfg.apply(df.parse_instruction_line('ENTRYPOINT ["x"]'), config, {}, {}, "\\", cmd_set=True)
    assert config["Cmd"] == ["mine"]


def _tree(root: Path) -> int:
    (root / "ctx" / "dir" / "sub").mkdir(parents=True)
    (root / "ctx" / "a.txt").write_text("a")
    (root / "ctx" / "b.txt").write_text("b")
    (root / "ctx" / "dir" / "sub" / "c.bin").write_bytes(b"c")
    (root / "outside").write_text("secret")
    os.symlink("/outside", root / "ctx" / "abs-link")
    os.symlink("../../outside", root / "ctx" / "rel-link")
    return os.open(root / "ctx", os.O_PATH | os.O_DIRECTORY)


def test_copy_sources_stay_inside_the_context(tmp_path: Path) -> None:
    fd = _tree(tmp_path)
    try:
        matches = cp.find_sources(fd, "*.txt", 3, "the build context")
        assert [m.rel for m in matches] == ["a.txt", "b.txt"]
        assert cp.find_sources(fd, "/dir", 3, "ctx") == [cp.Match("dir", True)]
        assert cp.find_sources(fd, "dir/*/c.*", 3, "ctx") == [cp.Match("dir/sub/c.bin", False)]
        with pytest.raises(InvalidArgument, match="forbidden path outside the build context"):
            cp.find_sources(fd, "../outside", 3, "ctx")
        # Symlinks resolve with the context as `/`: both point at a missing /outside in it.
        for link in ("abs-link", "rel-link"):
            with pytest.raises(InvalidArgument, match="file not found in ctx"):
                cp.find_sources(fd, link, 3, "ctx")
    finally:
        os.close(fd)


def test_copy_checksum_ignores_mtime_but_not_content_or_mode(tmp_path: Path) -> None:
    fd = _tree(tmp_path)
    try:
        matches = cp.find_sources(fd, "dir", 1, "ctx")
        first = cp.checksum(fd, matches)
        os.utime(tmp_path / "ctx" / "dir" / "sub" / "c.bin", (1, 1))
        assert cp.checksum(fd, matches) == first
        os.chmod(tmp_path / "ctx" / "dir" / "sub" / "c.bin", 0o700)
        second = cp.checksum(fd, matches)
        assert second != first
        (tmp_path / "ctx" / "dir" / "sub" / "c.bin").write_bytes(b"C")
        assert cp.checksum(fd, matches) != second
    finally:
        os.close(fd)


def test_copy_tar_names_owners_and_modes(tmp_path: Path) -> None:
    fd = _tree(tmp_path)
    try:
        matches = cp.find_sources(fd, "dir", 1, "ctx") + cp.find_sources(fd, "a.txt", 1, "ctx")
        the_plan = cp.plan_destinations(matches, 2, "dest/", "/app", False, 1)
        out = tmp_path / "copy.tar"
        with out.open("wb") as f:
            cp.write_tar(f, fd, the_plan, cp.Owner(1000, 1001), 0o640, set())
        with tarfile.open(out) as tar:
            members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"app/dest", "app/dest/sub", "app/dest/sub/c.bin", "app/dest/a.txt"}
        assert all((m.uid, m.gid) == (1000, 1001) for m in members.values())
        assert members["app/dest/a.txt"].mode == 0o640
        with pytest.raises(InvalidArgument, match="destination must be a directory"):
            cp.plan_destinations(matches, 2, "/file", "/", False, 1)
    finally:
        os.close(fd)


def test_cache_keys_differ_by_what_matters() -> None:
    base = cache_key("sha256:p", "RUN x", {"args": [["A", "1"]]})
    assert base == cache_key("sha256:p", "RUN x", {"args": [["A", "1"]]})
    assert base != cache_key("sha256:q", "RUN x", {"args": [["A", "1"]]})
    assert base != cache_key("sha256:p", "RUN y", {"args": [["A", "1"]]})
    assert base != cache_key("sha256:p", "RUN x", {"args": [["A", "2"]]})
