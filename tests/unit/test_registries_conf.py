from __future__ import annotations

from pathlib import Path

import pytest

from runtimed.errors import InvalidArgument, NotFound, PermissionDenied
from runtimed.images import registries_conf
from runtimed.images.reference import parse_reference
from runtimed.images.registries_conf import Endpoint, RegistriesConfig, from_toml

SHA = "sha256:" + "cd" * 32

CONF = """
unqualified-search-registries = ["docker.io", "quay.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.example.com:5000/hub"
insecure = true
[[registry.mirror]]
location = "digests.example.com"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "example.com/foo"
location = "internal.example.net/bar"

[[registry]]
prefix = "example.com/foo/special"
location = "special.example.net"

[[registry]]
location = "blocked.example.com"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true

[[registry]]
location = "plain.example.org:8080"
insecure = true
"""


def _endpoints(text: str, conf: str = CONF) -> list[Endpoint]:
    return from_toml(conf).endpoints_for(parse_reference(text))


def test_no_config_pulls_docker_hub_from_registry_1() -> None:
    assert RegistriesConfig().endpoints_for(parse_reference("busybox")) == [
        Endpoint("docker.io", "registry-1.docker.io", "library/busybox", False, False)
    ]


def test_mirrors_come_first_then_the_primary() -> None:
    eps = _endpoints("busybox:1")
    assert eps == [
        Endpoint(
            "mirror.example.com:5000", "mirror.example.com:5000", "hub/library/busybox", True, True
        ),
        Endpoint("docker.io", "registry-1.docker.io", "library/busybox", False, False),
    ]


def test_digest_only_mirror_is_used_for_digests_only() -> None:
    eps = _endpoints(f"busybox@{SHA}")
    assert [e.host for e in eps] == [
        "mirror.example.com:5000",
        "digests.example.com",
        "registry-1.docker.io",
    ]
    assert eps[1].repository == "library/busybox"


def test_prefix_rewrite_and_longest_match() -> None:
    (ep,) = _endpoints("example.com/foo/app:1")
    assert (ep.host, ep.repository) == ("internal.example.net", "bar/app")
    (ep,) = _endpoints("example.com/foo/special/x")
    assert (ep.host, ep.repository) == ("special.example.net", "x")
    # A prefix matches whole path components only.
    (ep,) = _endpoints("example.com/foobar/app")
    assert (ep.host, ep.repository) == ("example.com", "foobar/app")


def test_blocked_registry_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="blocked.example.com is blocked"):
        _endpoints("blocked.example.com/x/y")


def test_wildcard_prefix_matches_subdomains_without_rewrite() -> None:
    (ep,) = _endpoints("a.corp.example/team/app")
    assert ep == Endpoint("a.corp.example", "a.corp.example", "team/app", True, False)
    (ep,) = _endpoints("corp.example/team/app")
    assert not ep.insecure


def test_insecure_flags() -> None:
    config = from_toml(CONF, insecure_registries=["10.1.0.0/16", "extra.example:443"])
    assert config.is_insecure("plain.example.org:8080")
    assert config.is_insecure("10.1.2.3:5000")
    assert not config.is_insecure("10.2.0.1:5000")
    assert config.is_insecure("extra.example:443")
    assert config.is_insecure("b.corp.example")
    assert not config.is_insecure("example.com")
    assert not config.is_insecure("docker.io")
    (ep,) = config.endpoints_for(parse_reference("plain.example.org:8080/a"))
    assert ep.insecure


@pytest.mark.parametrize("host", ["localhost:5000", "127.0.0.1", "127.9.9.9:80", "[::1]:5000"])
def test_loopback_is_insecure_by_default(host: str) -> None:
    config = RegistriesConfig()
    assert config.is_insecure(host)
    (ep,) = config.endpoints_for(parse_reference(f"{host}/img"))
    assert ep.insecure and ep.host == host


def test_endpoint_for_registry() -> None:
    config = from_toml(CONF)
    assert config.endpoint_for_registry("https://index.docker.io/v1/").host == (
        "registry-1.docker.io"
    )
    ep = config.endpoint_for_registry("plain.example.org:8080")
    assert ep.insecure and ep.repository == ""


def test_v1_format_is_translated() -> None:
    conf = """
[registries.search]
registries = ["quay.io"]
[registries.insecure]
registries = ["old.example:5000"]
[registries.block]
registries = ["evil.example"]
"""
    config = from_toml(conf)
    assert config.unqualified_search_registries == ("quay.io",)
    assert config.is_insecure("old.example:5000")
    (ep,) = config.endpoints_for(parse_reference("old.example:5000/a"))
    assert ep.insecure
    with pytest.raises(PermissionDenied):
        config.endpoints_for(parse_reference("evil.example/a"))


@pytest.mark.parametrize(
    ("conf", "reason"),
    [
        ("[[registry]\n", "not valid TOML"),
        ("[[registry]]\ninsecure = true\n", "needs a prefix or a location"),
        ('[[registry]]\nlocation = "a.io"\ninsecure = "yes"\n', "must be true or false"),
        ('[[registry]]\nprefix = "*.a.io"\nlocation = "b.io"\n', "cannot have a location"),
        ('[[registry]]\nlocation = "a.io"\n[[registry]]\nlocation = "a.io"\n', "defined twice"),
        (
            '[[registry]]\nlocation = "a.io"\n[[registry.mirror]]\ninsecure = true\n',
            "needs a location",
        ),
        (
            '[[registry]]\nlocation = "a.io"\n[[registry.mirror]]\nlocation = "m.io"\n'
            'pull-from-mirror = "sometimes"\n',
            "pull-from-mirror must be one of",
        ),
        ('unqualified-search-registries = "docker.io"\n', "must be strings"),
        (
            'unqualified-search-registries = ["a"]\n[registries.search]\nregistries = []\n',
            "mixes the v1",
        ),
    ],
)
def test_invalid_config_is_reported(conf: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        from_toml(conf)


def test_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "registries.conf"
    path.write_text(CONF)
    assert len(registries_conf.load(path).registries) == 6
    with pytest.raises(NotFound, match="does not exist"):
        registries_conf.load(tmp_path / "missing.conf")
    path.write_text("[[registry]]\n")
    with pytest.raises(InvalidArgument, match=str(path)):
        registries_conf.load(path)
    # Defaults: the user's file is preferred; none at all means an empty config.
    monkeypatch.setattr(registries_conf, "default_paths", lambda: [tmp_path / "nope"])
    assert registries_conf.load(None, ["x.example"]).is_insecure("x.example")
    user = tmp_path / "user.conf"
    user.write_text('[[registry]]\nlocation = "u.example"\nblocked = true\n')
    monkeypatch.setattr(registries_conf, "default_paths", lambda: [user, path])
    assert registries_conf.load().registries[0].blocked
