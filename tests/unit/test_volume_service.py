"""VolumeService with the real local driver and the test Docker plugin process: create,
list filters, in-use refusal, prune, and a plugin's errors and absence."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtimed_plugins.volumes.local import LocalDriver, parse_options

from runtimed.core.model import Container, ContainerConfig, ContainerState
from runtimed.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from runtimed.store.metadata import MetadataStore
from runtimed.volumes.driver import entry_point_drivers
from runtimed.volumes.names import ANONYMOUS_LABEL
from runtimed.volumes.remote import RemoteVolumeDriver, discover, find_plugin
from runtimed.volumes.service import VolumeService
from runtimed.volumes.store import VolumeRecord, VolumeRecords
from tests.support.python_volume_driver import DirDriver, write_distribution
from tests.support.volume_plugin import VolumePlugin


def using(container_id: str, *names: str) -> Container:
    mounts = [{"type": "volume", "source": n, "target": f"/{n}"} for n in names]
    return Container(
        id=container_id,
        name=container_id,
        sandbox_id=container_id,
        config=ContainerConfig(
            image="busybox", image_id="sha256:x", spec={}, args=["sh"],
            extras={"volumes": {"mounts": mounts}},
        ),
        state=ContainerState(),
        created_at=0,
    )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[VolumeService, list[Container]]]:
    containers: list[Container] = []
    db = MetadataStore(tmp_path / "metadata.db")
    service = VolumeService(
        metadata=db,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        plugin_dirs=[tmp_path / "run" / "plugins", tmp_path / "config" / "plugins"],
        containers=lambda: list(containers),
    )
    yield service, containers
    db.close()


async def test_local_volumes_lifecycle(world: tuple[VolumeService, list[Container]]) -> None:
    service, containers = world
    record = await service.create("data", labels={"team": "core"})
    path = Path(record.mountpoint)
    assert path.is_dir() and path.name == "_data" and path.parent.name == "data"
    assert (await service.create("data")).created_at == record.created_at  # docker: idempotent
    with pytest.raises(FailedPrecondition, match="already exists with driver 'local'"):
        await service.create("data", driver="other")
    anon = await service.create(anonymous=True)
    assert len(anon.name) == 64 and anon.labels == {ANONYMOUS_LABEL: ""}

    containers.append(using("c1", "data"))
    names = lambda views: sorted(v.record.name for v in views)  # noqa: E731
    assert names((await service.list([("dangling", "true")]))[0]) == [anon.name]
    assert names((await service.list([("dangling", "false")]))[0]) == ["data"]
    assert names((await service.list([("label", "team=core")]))[0]) == ["data"]
    assert names((await service.list([("label!", "team")]))[0]) == [anon.name]
    assert names((await service.list([("name", "at")]))[0]) == ["data"]
    assert names((await service.list([("driver", "local")]))[0]) == sorted(["data", anon.name])
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        await service.list([("colour", "red")])
    assert (await service.inspect("data")).used_by == ["c1"]

    (path / "keep").write_text("precious")
    with pytest.raises(FailedPrecondition, match=r"volume is in use - \[c1\]"):
        await service.remove("data")
    with pytest.raises(FailedPrecondition, match="in use"):
        await service.remove("data", force=True)  # -f does not override in-use
    assert (path / "keep").read_text() == "precious"

    # prune: anonymous and unused only; -a takes unused named ones too, never used ones.
    await service.create("spare")
    deleted, _ = await service.prune()
    assert deleted == [anon.name]
    deleted, _ = await service.prune([("label", "nothing=here")], all_volumes=True)
    assert deleted == []
    deleted, _ = await service.prune(all_volumes=True)
    assert deleted == ["spare"]
    assert names((await service.list())[0]) == ["data"]

    containers.clear()
    assert await service.remove("data")
    assert not path.parent.exists()
    with pytest.raises(NotFound, match="no such volume"):
        await service.remove("data")
    assert await service.remove("data", force=True) is False


async def test_local_driver_refuses_a_swapped_directory(tmp_path: Path) -> None:
    from runtimed.volumes.driver import DriverContext

    driver = LocalDriver(DriverContext(tmp_path, tmp_path / "run"))
    (tmp_path / "volumes").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "volumes" / "evil")
    with pytest.raises(FailedPrecondition, match="not a plain directory"):
        await driver.create("evil", {})
    with pytest.raises(FailedPrecondition, match="not a plain directory"):
        await driver.mount("evil", "c1")
    with pytest.raises(InvalidArgument):
        await driver.create("../evil", {})
    assert list((tmp_path / "outside").iterdir()) == []


def test_local_driver_options() -> None:
    assert parse_options({}) == {}
    tmpfs = {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000,noexec"}
    assert parse_options(tmpfs) == tmpfs
    assert parse_options({"type": "none", "o": "bind", "device": "/srv"})
    for bad, message in [
        ({"colour": "red"}, "invalid option key"),
        ({"type": "nfs", "o": "addr=1.2.3.4"}, "only type=tmpfs or o=bind"),
        ({"type": "tmpfs", "o": "size=1m,sec=krb5"}, "invalid tmpfs option"),
        ({"o": "bind", "device": "rel"}, "absolute"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            parse_options(bad)


def test_volume_records_keep_mounts_apart(tmp_path: Path) -> None:
    db = MetadataStore(tmp_path / "m.db")
    records = VolumeRecords(db)
    records.add(VolumeRecord(name="v", driver="local", created_at=1, options={"a": "b"}))
    with pytest.raises(AlreadyExists):
        records.add(VolumeRecord(name="v", driver="local", created_at=2))
    again = VolumeRecords(db)  # tables are created once, records stay
    assert again.get("v") is not None and again.get("v").options == {"a": "b"}  # type: ignore[union-attr]
    db.close()


def test_the_local_driver_is_an_entry_point() -> None:
    entry = entry_point_drivers()["local"]
    assert entry.factory is LocalDriver and entry.address.startswith("runtimed_plugins.")


async def test_a_python_package_registers_a_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entries = entry_point_drivers()
    assert entries["testdir"].factory is DirDriver
    db = MetadataStore(tmp_path / "m.db")
    service = VolumeService(
        metadata=db,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        plugin_dirs=[],
        containers=list,
        drivers=entries,
    )
    await service.create("pyvol", driver="testdir")
    path = await service.driver("testdir").mount("pyvol", "c1")
    assert path == str(tmp_path / "run" / "testdir-volumes" / "pyvol")
    listed = {p.name: (p.kind, p.state) for p in await service.plugins() if p.kind != "logdriver"}
    assert listed == {"local": ("volumedriver", "builtin"), "testdir": ("volumedriver", "active")}
    db.close()


# --- Docker plugins ---------------------------------------------------------------------


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[VolumePlugin]:
    with VolumePlugin(tmp_path / "run" / "plugins", "tplug", tmp_path / "plug").running() as p:
        yield p


async def test_plugin_protocol_end_to_end(
    world: tuple[VolumeService, list[Container]], plugin: VolumePlugin
) -> None:
    service, _ = world
    record = await service.create("pv", driver="tplug", options={"size": "1"})
    assert record.driver == "tplug"
    driver = service.driver("tplug")
    path = await driver.mount("pv", "id-1")
    assert path == str(plugin.root / "pv")
    await driver.mount("pv", "id-2")
    assert plugin.active_mounts() == {"pv": ["id-1", "id-2"]}
    view = await service.inspect("pv")
    assert view.scope == "global" and view.status["mounts"] == 2
    await driver.unmount("pv", "id-1")
    await driver.unmount("pv", "id-2")
    assert plugin.active_mounts() == {}
    (plugin.root / "made-elsewhere").mkdir()
    views, warnings = await service.list()
    assert {v.record.name: v.managed for v in views} == {"pv": True, "made-elsewhere": False}
    assert warnings == []
    assert (await service.inspect("made-elsewhere")).record.driver == "tplug"
    await service.remove("pv")
    methods = [c["method"] for c in plugin.calls()]
    assert methods[0] == "Plugin.Activate"
    for name in ("Create", "Mount", "Unmount", "Path", "Get", "List", "Capabilities", "Remove"):
        assert f"VolumeDriver.{name}" in methods


async def test_plugin_errors_are_surfaced(
    world: tuple[VolumeService, list[Container]], plugin: VolumePlugin
) -> None:
    service, _ = world
    plugin.fail("VolumeDriver.Create", "quota exceeded on the array")
    with pytest.raises(FailedPrecondition) as info:
        await service.create("pv", driver="tplug")
    assert info.value.message == (
        "volume plugin 'tplug': VolumeDriver.Create: quota exceeded on the array"
    )
    assert service.records.get("pv") is None
    plugin.heal()
    await service.create("pv", driver="tplug")
    plugin.fail("VolumeDriver.Remove", "busy")
    with pytest.raises(FailedPrecondition, match="busy"):
        await service.remove("pv")
    assert service.records.get("pv") is not None
    assert await service.remove("pv", force=True)  # -f forgets it anyway
    assert service.records.get("pv") is None


async def test_plugin_down_is_unavailable(
    world: tuple[VolumeService, list[Container]], plugin: VolumePlugin
) -> None:
    service, _ = world
    await service.create("pv", driver="tplug")
    plugin.stop()
    with pytest.raises(Unavailable, match="'tplug' at unix://.* is not reachable"):
        await service.driver("tplug").mount("pv", "c1")
    views, warnings = await service.list()
    assert [v.record.name for v in views] == ["pv"]
    assert warnings and "not reachable" in warnings[0]
    [view] = [p for p in await service.plugins() if p.name == "tplug"]
    assert view.state == "unreachable" and "not reachable" in view.error


async def test_unknown_driver_names_the_directories(
    world: tuple[VolumeService, list[Container]],
) -> None:
    service, _ = world
    with pytest.raises(NotFound, match=r"volume driver 'nope' not found.*run/plugins"):
        await service.create("vv", driver="nope")


async def test_plugin_discovery_by_spec_files(tmp_path: Path, plugin: VolumePlugin) -> None:
    config = tmp_path / "config" / "plugins"
    config.mkdir(parents=True)
    (config / "byspec.spec").write_text(f"unix://{plugin.socket}\n")
    (config / "byjson.json").write_text(json.dumps({"Name": "byjson", "Addr": "tcp://h:1"}))
    (config / "broken.spec").write_text("http://nope\n")
    dirs = [tmp_path / "run" / "plugins", config]
    assert find_plugin("byspec", dirs).url == f"unix://{plugin.socket}"  # type: ignore[union-attr]
    assert find_plugin("byjson", dirs).url == "tcp://h:1"  # type: ignore[union-attr]
    assert find_plugin("../byspec", dirs) is None
    found, problems = discover(dirs)
    assert sorted(a.name for a in found) == ["byjson", "byspec", "tplug"]
    assert problems and "must start with unix:// or tcp://" in problems[0]
    remote = RemoteVolumeDriver(find_plugin("byspec", dirs))  # type: ignore[arg-type]
    assert await remote.activate() == ["VolumeDriver"]
