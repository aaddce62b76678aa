"""runtimed.toml and -H parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimed.config import Config
from runtimed.errors import InvalidArgument
from runtimed.paths import parse_host


def test_defaults_follow_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    cfg = Config.load(None)
    assert cfg.socket == tmp_path / "run" / "runtimed" / "runtimed.sock"
    assert cfg.data_dir == tmp_path / "data" / "runtimed"


def test_file_settings_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "runtimed.toml"
    path.write_text('storage_driver = "vfs"\ninsecure_registries = ["reg.local:5000"]\n')
    cfg = Config.load(path)
    assert cfg.storage_driver == "vfs" and cfg.insecure_registries == ["reg.local:5000"]
    path.write_text('colour = "blue"\n')
    with pytest.raises(InvalidArgument, match="unknown setting 'colour'"):
        Config.load(path)
    path.write_text('runtime = "kata"\n')
    with pytest.raises(InvalidArgument, match="runtime: must be one of"):
        Config.load(path)
    # Closed by default (another user's 127.0.0.1-only service stays private); opt-in.
    path.write_text("host_loopback = true\n")
    assert Config.load(path).host_loopback is True and Config().host_loopback is False
    path.write_text('host_loopback = "no"\n')  # a string is not a boolean, even "no"
    with pytest.raises(InvalidArgument, match="host_loopback"):
        Config.load(path)
    path.write_text("not toml [")
    with pytest.raises(InvalidArgument, match="cannot read config file"):
        Config.load(path)
    with pytest.raises(InvalidArgument, match="does not exist"):
        Config.load(tmp_path / "absent.toml")


def test_parse_host() -> None:
    assert parse_host("unix:///run/x.sock") == Path("/run/x.sock")
    assert parse_host("/tmp/y.sock") == Path("/tmp/y.sock")
    with pytest.raises(InvalidArgument, match="only unix://"):
        parse_host("tcp://1.2.3.4:2375")
    with pytest.raises(InvalidArgument):
        parse_host("unix://")


def test_stream_address(tmp_path: Path) -> None:
    path = tmp_path / "runtimed.toml"
    assert Config().stream_address == "127.0.0.1:0"
    path.write_text('stream_address = "127.0.0.1:10010"\n')
    assert Config.load(path).stream_address == "127.0.0.1:10010"
    path.write_text('stream_address = "0.0.0.0:10010"\n')
    with pytest.raises(InvalidArgument, match="stream_address: '0.0.0.0:10010' is not a loopback"):
        Config.load(path)
