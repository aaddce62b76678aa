"""Rootless prerequisites are checked up front and failures say how to fix them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimed.errors import FailedPrecondition
from runtimed.rootless import userns


def test_read_subid_range_by_name_or_uid(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("other:100000:65536\nalice:200000:400000\n1234:700000:10\n")
    assert userns.read_subid_range(f, "alice", 1000) == userns.IdRange(200000, 400000)
    assert userns.read_subid_range(f, "bob", 1234) == userns.IdRange(700000, 10)
    assert userns.read_subid_range(f, "carol", 1) is None
    assert userns.read_subid_range(tmp_path / "missing", "alice", 1000) is None


def test_missing_subuid_range_says_how_to_fix(tmp_path: Path) -> None:
    empty = tmp_path / "subuid"
    empty.write_text("")
    with pytest.raises(FailedPrecondition) as err:
        userns.plan_mapping(empty, empty)
    assert "no subordinate uid range" in err.value.message
    assert "usermod --add-subuids" in err.value.message


def test_missing_newuidmap_says_which_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FailedPrecondition) as err:
        userns.plan_mapping()
    assert "apt-get install uidmap" in err.value.message
