"""Shared fixtures: the test registry (session-wide), the daemon, container cleanup.

Load from conftest.py with `pytest_plugins = ["tests.support.fixtures"]`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.images import PushedImages, push_all
from tests.support.registry import Registry

AUTH_USER = "tester"
AUTH_PASSWORD = "s3cret"


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """An open registry on 127.0.0.1, started once per session."""
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    """A registry that demands basic auth as tester / s3cret."""
    with Registry(auth=(AUTH_USER, AUTH_PASSWORD)) as reg:
        yield reg


@pytest.fixture(scope="session")
def evil_target() -> Iterator[Path]:
    """The outside directory hostile layers aim at; see EvilImages.assert_untouched."""
    path = Path(tempfile.mkdtemp(prefix="runtimed-evil-target-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pushed_images(registry: Registry, evil_target: Path) -> PushedImages:
    """Every ready-made scenario, pushed once into `registry`."""
    return push_all(registry, evil_target)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """A real runtimed of this module's own: private socket and data dir, removed after."""
    with Daemon() as d:
        yield d


@pytest.fixture
def cleanup(daemon: Daemon) -> Iterator[list[str]]:
    """Names of containers the test creates: removed (forcibly) after it."""
    names: list[str] = []
    yield names
    for name in names:
        daemon.ctl("rm", "-f", name)
