from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from runtimed.errors import InvalidArgument
from runtimed.images.auth import Credential, CredentialStore, default_config_path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_reads_docker_login_entries(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    _write(
        path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": _b64("hub:pa:ss")},
                "https://quay.io": {"username": "q", "password": "qp"},
                "ghcr.io/v2/": {"identitytoken": "tok"},
                "localhost:5000": {"auth": _b64("local:pw")},
                "empty.example": {},
            }
        },
    )
    store = CredentialStore(path)
    assert store.get("docker.io") == Credential("hub", "pa:ss")
    assert store.get("registry-1.docker.io") == Credential("hub", "pa:ss")
    assert store.get("quay.io") == Credential("q", "qp")
    assert store.get("ghcr.io") == Credential("", "", identity_token="tok")
    assert store.get("localhost:5000") == Credential("local", "pw")
    assert store.get("localhost:5001") is None
    assert store.get("empty.example") is None


def test_missing_file_means_no_credentials(tmp_path: Path) -> None:
    assert CredentialStore(tmp_path / "nope" / "config.json").get("docker.io") is None


def test_password_is_not_in_repr() -> None:
    assert "s3cret" not in repr(Credential("u", "s3cret", "tok-s3cret"))


def test_store_round_trip_keeps_other_keys_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "dockercfg" / "config.json"
    _write(
        path,
        {
            "auths": {"https://localhost:5000": {"auth": _b64("old:old")}, "other.io": {}},
            "psFormat": "table {{.ID}}",
            "proxies": {"default": {"httpProxy": "http://p:3128"}},
        },
    )
    store = CredentialStore(path)
    store.store("localhost:5000", "alice", "wonder:land")
    store.store("docker.io", "bob", "builder")

    doc = json.loads(path.read_text())
    assert doc["psFormat"] == "table {{.ID}}"
    assert doc["proxies"] == {"default": {"httpProxy": "http://p:3128"}}
    # The old alias key is replaced by the one docker login writes.
    assert set(doc["auths"]) == {"localhost:5000", "other.io", "https://index.docker.io/v1/"}
    assert base64.b64decode(doc["auths"]["https://index.docker.io/v1/"]["auth"]) == b"bob:builder"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left

    fresh = CredentialStore(path)
    assert fresh.get("localhost:5000") == Credential("alice", "wonder:land")
    assert fresh.get("index.docker.io") == Credential("bob", "builder")

    assert fresh.erase("localhost:5000") is True
    assert fresh.get("localhost:5000") is None
    assert fresh.erase("localhost:5000") is False
    assert json.loads(path.read_text())["psFormat"] == "table {{.ID}}"


def test_store_creates_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.json"
    CredentialStore(path).store("example.com", "u", "p")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert CredentialStore(path).get("https://example.com/") == Credential("u", "p")


def test_store_writes_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config.json"
    _write(real, {"auths": {}})
    link = tmp_path / "docker" / "config.json"
    link.parent.mkdir()
    link.symlink_to(real)
    CredentialStore(link).store("example.com", "u", "p")
    assert link.is_symlink()
    assert "example.com" in json.loads(real.read_text())["auths"]


def test_bad_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        CredentialStore(path).get("docker.io")
    _write(path, {"auths": {"example.com": {"auth": "!!!"}}})
    with pytest.raises(InvalidArgument, match="not base64"):
        CredentialStore(path).get("example.com")
    with pytest.raises(InvalidArgument, match="must not contain ':'"):
        CredentialStore(path).store("example.com", "a:b", "c")


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "helped.example" ]; then\n'
        '  echo \'{"ServerURL":"helped.example","Username":"hu","Secret":"hs"}\'\n'
        "else echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    path = tmp_path / "config.json"
    _write(path, {"credHelpers": {"helped.example": "fake"}, "auths": {}})
    store = CredentialStore(path)
    assert store.get("helped.example") == Credential("hu", "hs")
    _write(path, {"credsStore": "fake", "auths": {}})
    assert store.get("helped.example") == Credential("hu", "hs")
    assert store.get("other.example") is None


def test_default_path_honours_docker_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/x/y")
    assert default_config_path() == Path("/x/y/config.json")
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", "/home/someone")
    assert default_config_path() == Path("/home/someone/.docker/config.json")
