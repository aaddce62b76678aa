"""The shim's log formats: what kubelet and `docker logs` will read back."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.pagecache import cached_bytes

_SHIM = str(Path(__file__).resolve().parents[2] / "shim")
if _SHIM not in sys.path:
    sys.path.insert(0, _SHIM)

from runtimed_shim.logs import (  # noqa: E402
    MAX_LINE,
    TRIM_STEP,
    CriLog,
    JsonFileLog,
    LineSplitter,
    cri_line,
    cri_run,
    json_line,
    json_run,
    rfc3339nano,
)

# 2024-03-01T12:34:56Z
SECOND = 1_709_296_496


def test_rfc3339nano_trims_trailing_zeros_like_go() -> None:
    assert rfc3339nano(SECOND * 10**9 + 123_456_789) == "2024-03-01T12:34:56.123456789Z"
    assert rfc3339nano(SECOND * 10**9 + 120_000_000) == "2024-03-01T12:34:56.12Z"
    assert rfc3339nano(SECOND * 10**9 + 1) == "2024-03-01T12:34:56.000000001Z"
    assert rfc3339nano(SECOND * 10**9) == "2024-03-01T12:34:56Z"


def _pieces(runs: list[tuple[list[bytes], bool]]) -> list[tuple[bytes, bool]]:
    return [(piece, complete) for pieces, complete in runs for piece in pieces]


def test_splitter_gives_the_same_lines_however_output_was_chunked() -> None:
    data = b"one\ntwo\n" + b"x" * (MAX_LINE * 2 + 5) + b"\ntail"
    whole = LineSplitter()
    expected = _pieces(whole.feed(data) + whole.flush())
    bytewise = LineSplitter()
    got = [p for i in range(len(data)) for p in _pieces(bytewise.feed(data[i : i + 1]))]
    assert got + _pieces(bytewise.flush()) == expected
    assert expected == [
        (b"one", True),
        (b"two", True),
        (b"x" * MAX_LINE, False),
        (b"x" * MAX_LINE, False),
        (b"x" * 5, True),
        (b"tail", False),
    ]


def test_splitter_keeps_empty_lines_and_holds_an_unfinished_one() -> None:
    s = LineSplitter()
    assert _pieces(s.feed(b"\n\nabc")) == [(b"", True), (b"", True)]
    assert _pieces(s.feed(b"def\n")) == [(b"abcdef", True)]
    assert s.flush() == []


def test_cri_line_format() -> None:
    stamp = "2024-03-01T12:34:56.5Z"
    assert cri_line("stdout", b"hello", True, stamp) == b"2024-03-01T12:34:56.5Z stdout F hello\n"
    assert cri_line("stderr", b"par", False, stamp) == b"2024-03-01T12:34:56.5Z stderr P par\n"
    assert cri_line("stdout", b"", True, stamp) == b"2024-03-01T12:34:56.5Z stdout F \n"


def test_json_line_has_docker_key_order_and_newline_rule() -> None:
    stamp = "2024-03-01T12:34:56.5Z"
    assert json_line("stdout", b"hi", True, stamp) == (
        b'{"log":"hi\\n","stream":"stdout","time":"2024-03-01T12:34:56.5Z"}\n'
    )
    # Partial chunks (long lines, an unterminated tail) carry no newline.
    assert json_line("stderr", b"hi", False, stamp) == (
        b'{"log":"hi","stream":"stderr","time":"2024-03-01T12:34:56.5Z"}\n'
    )


def json_escape(content: bytes) -> str:
    """The escaped text of a partial record's "log" field, as the writer makes it."""
    record = json_line("stdout", content, False, "T").decode()
    head, tail = '{"log":"', '","stream":"stdout","time":"T"}\n'
    assert record.startswith(head) and record.endswith(tail)
    return record[len(head) : -len(tail)]


def test_json_escaping_is_go_html_safe() -> None:
    assert json_escape(b"<a href='x'>&</a>") == "\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e"
    assert json_escape(b'quote " back \\ tab \t cr \r') == ('quote \\" back \\\\ tab \\t cr \\r')
    assert json_escape(b"\x00\x08\x0c\x1b\x7f") == "\\u0000\\u0008\\u000c\\u001b\x7f"
    assert json_escape("\u2028\u2029".encode()) == "\\u2028\\u2029"
    # UTF-8 stays as is; every byte that is not valid UTF-8 becomes one \ufffd.
    assert json_escape("grüß 日本 \ufffd".encode()) == "grüß 日本 \ufffd"
    assert json_escape(b"a\xffb\xe2\x82c") == "a\\ufffdb\\ufffd\\ufffdc"


def test_a_run_of_records_equals_its_records_one_by_one() -> None:
    stamp = "2024-03-01T12:34:56.5Z"
    pieces = [b"plain", b"", b'<"esc">\t\xff', "ünï \u2028".encode()]
    for complete in (True, False):
        assert json_run("stdout", pieces, complete, stamp) == b"".join(
            json_line("stdout", p, complete, stamp) for p in pieces
        )
        assert cri_run("stderr", pieces, complete, stamp) == b"".join(
            cri_line("stderr", p, complete, stamp) for p in pieces
        )


def test_json_lines_parse_back_to_the_original_text() -> None:
    text = 'mixed <tag> & "quotes" \\ \t \u2028 ünï\x01'
    record = json.loads(json_line("stdout", text.encode(), True, "2024-03-01T12:34:56Z"))
    assert record == {"log": text + "\n", "stream": "stdout", "time": "2024-03-01T12:34:56Z"}


def test_cri_log_splits_long_lines_and_ends_streams_with_a_partial(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = CriLog(str(path))
    ns = SECOND * 10**9 + 7
    log.write("stdout", b"a" * (MAX_LINE + 10) + b"\nshort\nunfin", ns)
    log.write("stderr", b"err\n", ns)
    log.end("stdout", ns)
    log.end("stderr", ns)
    log.close()
    stamp = "2024-03-01T12:34:56.000000007Z"
    assert path.read_bytes().split(b"\n")[:-1] == [
        f"{stamp} stdout P ".encode() + b"a" * MAX_LINE,
        f"{stamp} stdout F ".encode() + b"a" * 10,
        f"{stamp} stdout F short".encode(),
        f"{stamp} stderr F err".encode(),
        f"{stamp} stdout P unfin".encode(),
    ]


def test_log_appends_and_reopen_follows_a_rename(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(b"earlier\n")
    log = CriLog(str(path))
    log.write("stdout", b"one\n", SECOND * 10**9)
    path.rename(tmp_path / "c.log.1")
    log.reopen()
    log.write("stdout", b"two\n", SECOND * 10**9)
    log.close()
    assert (tmp_path / "c.log.1").read_bytes() == (b"earlier\n2024-03-01T12:34:56Z stdout F one\n")
    assert path.read_bytes() == b"2024-03-01T12:34:56Z stdout F two\n"


def _records(path: Path) -> list[str]:
    return [json.loads(line)["log"] for line in path.read_text().splitlines()]


def test_json_file_rotates_by_size_and_keeps_max_file(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    # Each record is 66 bytes: three fit in 210, a fourth would pass it and rotates.
    log = JsonFileLog(str(path), max_size=210, max_file=3)
    for i in range(10):
        log.write("stdout", f"line{i}\n".encode(), SECOND * 10**9)
    log.close()
    assert _records(path) == ["line9\n"]
    assert _records(tmp_path / "c-json.log.1") == ["line6\n", "line7\n", "line8\n"]
    assert _records(tmp_path / "c-json.log.2") == ["line3\n", "line4\n", "line5\n"]
    assert not (tmp_path / "c-json.log.3").exists()
    assert all(p.stat().st_size <= 210 for p in tmp_path.iterdir())


def test_rotation_renames_only_the_files_that_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A huge max-file (the 1e20 that once wedged a shim in a rename loop) costs what is
    on disk: each rotation renames the rotated files there are, no more."""
    renames: list[tuple[str, str]] = []
    real_rename = os.rename

    def counting_rename(src: str, dst: str) -> None:
        renames.append((src, dst))
        assert len(renames) < 100, "rotation renames files that do not exist"
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", counting_rename)
    path = tmp_path / "c-json.log"
    log = JsonFileLog(str(path), max_size=210, max_file=10**20)
    for i in range(10):
        log.write("stdout", f"line{i}\n".encode(), SECOND * 10**9)
    log.close()
    # 3 rotations: .1 moved to .2 once, .2 to .3 and .1 to .2 the next time; plus 3 of the log.
    assert len(renames) == 6
    assert _records(tmp_path / "c-json.log.3") == ["line0\n", "line1\n", "line2\n"]
    assert _records(tmp_path / "c-json.log.1") == ["line6\n", "line7\n", "line8\n"]
    assert _records(path) == ["line9\n"]


def test_json_file_with_one_file_truncates(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = JsonFileLog(str(path), max_size=150, max_file=1)
    for i in range(5):
        log.write("stdout", f"line{i}\n".encode(), SECOND * 10**9)
    log.close()
    assert _records(path) == ["line4\n"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c-json.log"]


def test_blocks_written_in_pieces_equal_records_and_rotate_between_them(tmp_path: Path) -> None:
    """emit_block writes frame and lines as separate pieces (writev): the file must hold
    exactly what the records would, also when a block crosses max-size."""
    lines = [f"line{i}".encode() for i in range(12)]
    stamp = rfc3339nano(SECOND * 10**9)
    expected = b"".join(json_run("stdout", [line], True, stamp) for line in lines)
    whole = JsonFileLog(str(tmp_path / "whole.log"))
    whole.emit_block("stdout", b"\n".join(lines), SECOND * 10**9)
    whole.close()
    assert (tmp_path / "whole.log").read_bytes() == expected
    cri = CriLog(str(tmp_path / "cri.log"))
    cri.emit_block("stderr", b"a\nb", SECOND * 10**9)
    cri.close()
    assert (tmp_path / "cri.log").read_bytes() == cri_run("stderr", [b"a"], True, stamp) + cri_run(
        "stderr", [b"b"], True, stamp
    )
    rotating = JsonFileLog(str(tmp_path / "r.log"), max_size=210, max_file=5)
    rotating.emit_block("stdout", b"\n".join(lines[:5]), SECOND * 10**9)  # 5 x 66 bytes
    rotating.emit_block("stdout", b"\n".join(lines[5:]), SECOND * 10**9)
    rotating.close()
    assert _records(tmp_path / "r.log.1") == ["line6\n", "line7\n", "line8\n"]
    assert _records(tmp_path / "r.log") == ["line9\n", "line10\n", "line11\n"]
    assert all(p.stat().st_size <= 210 for p in tmp_path.glob("r.log*"))


def test_written_log_pages_leave_the_page_cache_once_on_disk() -> None:
    """A container that logs gigabytes must not leave them all in the node's memory: what
    is on disk leaves the cache, only the newest steps stay (for followers)."""
    block = b"\n".join([b"0123456789012345678901234567890123456789"] * 1600)
    # On the disk, not a tmpfs /tmp: tmpfs pages cannot leave memory.
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        path = Path(tmp) / "c-json.log"
        log = JsonFileLog(str(path))
        while log.file.size < 6 * TRIM_STEP:
            log.emit_block("stdout", block, SECOND * 10**9)
        os.fdatasync(log.fd)  # all of it on disk; the next trim may drop all but the newest
        while log.file.size < 7 * TRIM_STEP:
            log.emit_block("stdout", block, SECOND * 10**9)
        log.close()
        assert path.stat().st_size >= 7 * TRIM_STEP
        assert cached_bytes(path) <= TRIM_STEP + (1 << 20)
        with path.open("rb") as f:  # and every record reads back whole
            first, count = f.readline(), 1 + sum(1 for _ in f)
        assert json.loads(first) == {
            "log": "0123456789012345678901234567890123456789\n",
            "stream": "stdout",
            "time": "2024-03-01T12:34:56Z",
        }
        assert count * len(first) == path.stat().st_size


def test_short_writes_are_finished_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writev may write less than asked (a full disk, a signal): the rest follows, in order."""
    real_writev = os.writev

    def at_most_seven_bytes(fd: int, buffers: list[bytes]) -> int:
        return real_writev(fd, [bytes(b"".join(bytes(b) for b in buffers)[:7])])

    path = tmp_path / "c-json.log"
    lines = [f"line{i}".encode() for i in range(5)]
    expected = b"".join(
        json_run("stdout", [line], True, rfc3339nano(SECOND * 10**9)) for line in lines
    )
    log = JsonFileLog(str(path))
    monkeypatch.setattr("runtimed_shim.logs.os.writev", at_most_seven_bytes)
    log.emit_block("stdout", b"\n".join(lines), SECOND * 10**9)
    monkeypatch.undo()
    log.close()
    assert path.read_bytes() == expected
    assert log.file.size == len(expected)
