"""Volume drivers behind one interface: the built-in local one (an entry point, as any
Python package's driver) and Docker volume plugins over their HTTP protocol (a real plugin
process on a socket, or found through a spec file), with their errors and their absence
failing cleanly."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.daemon import Daemon
from tests.support.volume_plugin import VolumePlugin
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """A daemon whose plugin dirs are private: run/plugins and config/runtimed/plugins."""
    d = Daemon()
    d.env["XDG_CONFIG_HOME"] = str(d.root / "config")
    with d:
        yield d


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("bb:plug")


@pytest.fixture
def plugin(daemon: Daemon, request: pytest.FixtureRequest) -> Iterator[VolumePlugin]:
    """A Docker plugin found by its socket in the daemon's run dir (its own per test)."""
    work = daemon.root / f"plugin-{request.node.name}"
    with VolumePlugin(daemon.socket.parent / "plugins", "tplug", work).running() as p:
        yield p
    p.heal()


def state(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.ok("inspect", name).stdout)[0]["State"]


def plugins(daemon: Daemon) -> dict[str, list[str]]:
    """Volume drivers by name: [state, error] (log drivers may share a name)."""
    rows = daemon.ok("plugin", "ls", "--format", "{{.Name}}|{{.Type}}|{{.State}}|{{.Error}}")
    fields = [line.split("|") for line in rows.out_lines]
    return {f[0]: f[2:] for f in fields if f[1] == "volumedriver"}


def test_drivers_behind_one_interface(daemon: Daemon, image: str, plugin: VolumePlugin) -> None:
    # A second plugin found through a spec file in the config dir, its socket elsewhere.
    spec_dir = daemon.root / "config" / "runtimed" / "plugins"
    spec_dir.mkdir(parents=True, exist_ok=True)
    other = VolumePlugin(daemon.root / "elsewhere", "specplug", daemon.root / "spec-work")
    (spec_dir / "specplug.spec").write_text(f"unix://{other.socket}\n")
    with other.running():
        listed = plugins(daemon)
        assert listed["local"][0] == "builtin"
        assert listed["tplug"][0] == "active"
        assert listed["specplug"][0] == "active"
        daemon.ok("volume", "create", "-d", "specplug", "sv")
        out = daemon.ok("run", "--rm", "-v", "sv:/d", image, "sh", "-c", "echo s > /d/f")
        assert out.returncode == 0 and (other.root / "sv" / "f").read_text() == "s\n"
        daemon.ok("volume", "rm", "sv")


def test_plugin_volumes_are_mounted_once_per_container(
    daemon: Daemon, image: str, plugin: VolumePlugin
) -> None:
    daemon.ok("volume", "create", "-d", "tplug", "-o", "size=1g", "pv")
    a = daemon.ok("run", "-d", "--name", "pa", "-v", "pv:/d", "-v", "pv:/again", image,
                  "sh", "-c", "echo a > /d/a; sleep 60").stdout.strip()  # fmt: skip
    b = daemon.ok("run", "-d", "--name", "pb", "--mount", "type=volume,src=pv,dst=/d", image,
                  "sleep", "60").stdout.strip()  # fmt: skip
    assert daemon.ok("exec", "pb", "cat", "/d/a").stdout == "a\n"
    # One mount id per container, however often it mounts the volume.
    assert sorted(plugin.active_mounts()["pv"]) == sorted([a, b])
    doc = json.loads(daemon.ok("volume", "inspect", "pv").stdout)[0]
    assert doc["Driver"] == "tplug" and doc["Scope"] == "global"
    assert doc["Options"] == {"size": "1g"} and doc["Status"]["mounts"] == "2"
    assert doc["Mountpoint"] == str(plugin.root / "pv")
    # The ids outlive a daemon restart: the container that stops later still releases its own.
    daemon.stop()
    daemon.start()
    daemon.ok("stop", "-t", "0", "pa")
    wait_for(lambda: plugin.active_mounts() == {"pv": [b]}, what="pa's Unmount")
    daemon.ok("rm", "-f", "pa", "pb")
    assert plugin.active_mounts() == {}
    in_use_free = daemon.ok("volume", "rm", "pv")
    assert in_use_free.stdout == "pv\n" and not (plugin.root / "pv").exists()


def test_plugin_errors_fail_cleanly(daemon: Daemon, image: str, plugin: VolumePlugin) -> None:
    plugin.fail("VolumeDriver.Create", "quota exceeded")
    made = daemon.ctl("volume", "create", "-d", "tplug", "qv")
    assert made.returncode == 1
    assert "volume plugin 'tplug': VolumeDriver.Create: quota exceeded" in made.stderr
    run = daemon.ctl("run", "--name", "pe-run", "-v", "qv:/d", "--volume-driver", "tplug",
                     image, "true")  # fmt: skip
    assert run.returncode == 125 and "quota exceeded" in run.stderr
    assert "pe-run" not in daemon.ok("ps", "-a", "--format", "{{.Names}}").stdout
    assert "qv" not in daemon.ok("volume", "ls", "-q").out_lines
    plugin.heal()

    daemon.ok("create", "--name", "pe", "-v", "ev:/d", "--volume-driver", "tplug", image,
              "sh", "-c", "echo started > /d/f")  # fmt: skip
    plugin.fail("VolumeDriver.Mount", "disk on fire")
    start = daemon.ctl("start", "pe")
    assert start.returncode == 1
    assert "error while mounting volume 'ev'" in start.stderr and "disk on fire" in start.stderr
    assert state(daemon, "pe")["Status"] == "created" and state(daemon, "pe")["Pid"] == 0
    assert plugin.active_mounts() == {}
    plugin.heal()
    daemon.ok("start", "-a", "pe")
    assert (plugin.root / "ev" / "f").read_text() == "started\n"
    wait_for(lambda: plugin.active_mounts() == {}, what="the exited container's Unmount")
    daemon.ok("rm", "pe")
    daemon.ok("volume", "rm", "ev")


def test_plugin_down_fails_the_start_cleanly(
    daemon: Daemon, image: str, plugin: VolumePlugin
) -> None:
    daemon.ok("create", "--name", "pd", "-v", "dv:/d", "--volume-driver", "tplug", image,
              "cat", "/d/f")  # fmt: skip
    (plugin.root / "dv" / "f").write_text("back\n")
    plugin.stop()
    start = daemon.ctl("start", "pd")
    assert start.returncode == 1 and "'tplug'" in start.stderr
    assert "is not reachable" in start.stderr
    assert state(daemon, "pd")["Status"] == "created"
    assert plugins(daemon)["tplug"][0] == "unreachable"
    listed = daemon.ok("volume", "ls")
    assert "dv" in listed.stdout and "WARNING: volume driver 'tplug'" in listed.stderr
    assert plugin.active_mounts() == {}
    plugin.start()
    assert daemon.ok("start", "-a", "pd").stdout == "back\n"
    wait_for(lambda: plugin.active_mounts() == {}, what="the exited container's Unmount")
    daemon.ok("rm", "pd")
    daemon.ok("volume", "rm", "dv")
