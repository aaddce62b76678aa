"""The generated stubs match the .proto files, and the CRI wire facts kubelet relies on hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.gen.runtimed.v1 import engine_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cri_services_and_field_numbers() -> None:
    services = cri.DESCRIPTOR.services_by_name
    assert services["RuntimeService"].full_name == "runtime.v1.RuntimeService"
    assert services["ImageService"].full_name == "runtime.v1.ImageService"
    image_methods = {m.name for m in services["ImageService"].methods}
    assert {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"} <= image_methods
    fields = {f.name: f.number for f in cri.PullImageRequest.DESCRIPTOR.fields}
    assert fields == {"image": 1, "auth": 2, "sandbox_config": 3}
    image = {f.name: f.number for f in cri.Image.DESCRIPTOR.fields}
    assert image["size"] == 4 and image["uid"] == 5 and image["spec"] == 7 and image["pinned"] == 8
    usage = {f.name: f.number for f in cri.FilesystemUsage.DESCRIPTOR.fields}
    assert usage == {"timestamp": 1, "fs_id": 2, "used_bytes": 3, "inodes_used": 4}


def test_engine_service_is_ours() -> None:
    assert engine_pb2.DESCRIPTOR.services_by_name["Engine"].full_name == "runtimed.v1.Engine"
