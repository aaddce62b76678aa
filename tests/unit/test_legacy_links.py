"""docker's legacy link variables, computed without a daemon."""

from __future__ import annotations

from runtimed.network.legacylinks import Port, Target, add_to_spec, env_prefix, link_env
from runtimed.oci.spec import SpecRequest


def test_alias_becomes_an_uppercase_prefix_as_docker_makes_it() -> None:
    assert env_prefix("my-db") == "MY_DB"
    assert env_prefix("db") == "DB"


def test_variables_for_ports_ranges_name_and_the_targets_environment() -> None:
    target = Target(
        alias="my-db",
        ip="10.88.0.5",
        # Out of order, one twice, a UDP port and a run of three TCP ports.
        ports=[Port(53, "udp"), Port(8002), Port(80), Port(8000), Port(8001), Port(80)],
        env=["PATH=/bin", "HOME=/root", "PASSWORD=s=cret", "EMPTY="],
    )
    env = link_env("web", target)
    values = dict(entry.split("=", 1) for entry in env)
    assert len(values) == len(env)  # no variable twice
    # The first port: TCP before UDP, then the lowest number.
    assert values["MY_DB_PORT"] == "tcp://10.88.0.5:80"
    for number, proto in [(80, "tcp"), (8000, "tcp"), (8001, "tcp"), (8002, "tcp"), (53, "udp")]:
        key = f"MY_DB_PORT_{number}_{proto.upper()}"
        assert values[key] == f"{proto}://10.88.0.5:{number}"
        assert values[f"{key}_ADDR"] == "10.88.0.5"
        assert values[f"{key}_PORT"] == str(number)
        assert values[f"{key}_PROTO"] == proto
    assert values["MY_DB_PORT_8000_TCP_START"] == "tcp://10.88.0.5:8000"
    assert values["MY_DB_PORT_8000_TCP_PORT_START"] == "8000"
    assert values["MY_DB_PORT_8000_TCP_END"] == "tcp://10.88.0.5:8002"
    assert values["MY_DB_PORT_8000_TCP_PORT_END"] == "8002"
    # A single port is no range.
    assert not [k for k in values if k.startswith("MY_DB_PORT_80_TCP_") and "START" in k]
    assert values["MY_DB_NAME"] == "/web/my-db"
    assert values["MY_DB_ENV_PASSWORD"] == "s=cret"
    assert values["MY_DB_ENV_EMPTY"] == ""
    assert "MY_DB_ENV_PATH" not in values and "MY_DB_ENV_HOME" not in values


def test_a_target_without_ports_gets_only_its_name_and_environment() -> None:
    env = link_env("app", Target(alias="cache", ip="10.88.0.9", env=["MODE=lru"]))
    assert env == ["CACHE_NAME=/app/cache", "CACHE_ENV_MODE=lru"]


def test_the_images_and_the_containers_own_variables_win_over_a_links() -> None:
    spec = SpecRequest(
        image_config={"Env": ["DB_NAME=from-image"]},
        env=["DB_ENV_MODE=from-user", "OTHER=1"],
    )
    target = Target(alias="db", ip="10.88.0.2", ports=[Port(5432)], env=["MODE=x"])
    add_to_spec(spec, "web", [target])
    assert "DB_NAME=/web/db" not in spec.env
    assert "DB_ENV_MODE=x" not in spec.env
    assert spec.env[-2:] == ["DB_ENV_MODE=from-user", "OTHER=1"]
    assert "DB_PORT=tcp://10.88.0.2:5432" in spec.env
