from __future__ import annotations

import json
from typing import Any

import pytest

from runtimed.errors import InvalidArgument, NotFound
from runtimed.images import manifest as m
from runtimed.images.manifest import (
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    parse_manifest,
    sha256_digest,
)


def _d(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def _manifest_doc(media_type: str | None = m.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {"mediaType": m.OCI_CONFIG, "digest": _d(1), "size": 10},
        "layers": [
            {"mediaType": m.OCI_LAYER_GZIP, "digest": _d(2), "size": 20},
            {"mediaType": m.OCI_LAYER_ZSTD, "digest": _d(3), "size": 30, "urls": ["https://x/y"]},
        ],
    }
    if media_type is not None:
        doc["mediaType"] = media_type
    doc.update(extra)
    return doc


def _index(*platforms: dict[str, str] | None) -> ImageIndex:
    entries = []
    for i, plat in enumerate(platforms):
        entry: dict[str, Any] = {"mediaType": m.OCI_MANIFEST, "digest": _d(100 + i), "size": 5}
        if plat is not None:
            entry["platform"] = plat
        entries.append(entry)
    doc = {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": entries}
    parsed = parse_manifest(json.dumps(doc).encode())
    assert isinstance(parsed, ImageIndex)
    return parsed


def test_parse_oci_manifest() -> None:
    parsed = parse_manifest(json.dumps(_manifest_doc()).encode())
    assert isinstance(parsed, ImageManifest)
    assert parsed.media_type == m.OCI_MANIFEST
    assert parsed.config == Descriptor(m.OCI_CONFIG, _d(1), 10)
    assert [layer.digest for layer in parsed.layers] == [_d(2), _d(3)]
    assert parsed.layers[1].urls == ("https://x/y",)
    parsed.check_is_image("img")


def test_media_type_from_header_or_shape_when_document_omits_it() -> None:
    doc = _manifest_doc(media_type=None)
    doc["config"]["mediaType"] = m.DOCKER_CONFIG
    assert parse_manifest(json.dumps(doc).encode(), m.DOCKER_MANIFEST).media_type == (
        m.DOCKER_MANIFEST
    )
    assert parse_manifest(json.dumps(doc).encode(), "application/json").media_type == (
        m.OCI_MANIFEST
    )
    index = {"schemaVersion": 2, "manifests": []}
    assert isinstance(parse_manifest(json.dumps(index).encode()), ImageIndex)


def test_docker_manifest_list_is_an_index() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": m.DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": m.DOCKER_MANIFEST,
                "digest": _d(5),
                "size": 7,
                "platform": {"os": "linux", "architecture": "arm", "variant": "v6"},
            }
        ],
    }
    parsed = parse_manifest(json.dumps(doc).encode())
    assert isinstance(parsed, ImageIndex)
    assert parsed.platforms() == [Platform("linux", "arm", "v6")]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, "schema 1 is not supported"),
        ({"schemaVersion": 3, "mediaType": m.OCI_MANIFEST}, "unsupported schemaVersion"),
        (_manifest_doc(config=None), "descriptor must be an object"),
        ({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "layers": []}, "has no config"),
        (_manifest_doc(layers="x"), "has no layers list"),
        ({"schemaVersion": 2, "mediaType": m.OCI_INDEX}, "has no manifests list"),
        ({"schemaVersion": 2, "mediaType": "text/plain"}, "unsupported manifest media type"),
        (
            _manifest_doc(config={"mediaType": m.OCI_CONFIG, "digest": "sha256:1", "size": 1}),
            "invalid digest",
        ),
        (
            _manifest_doc(config={"mediaType": m.OCI_CONFIG, "digest": _d(1), "size": -1}),
            "invalid size",
        ),
        (_manifest_doc(config={"digest": _d(1), "size": 1}), "no mediaType"),
    ],
)
def test_malformed_manifests_are_rejected(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        parse_manifest(json.dumps(doc).encode(), what="example.com/x:1")


def test_signed_schema1_is_rejected_by_header_too() -> None:
    doc = {"schemaVersion": 1, "signatures": []}
    with pytest.raises(InvalidArgument, match="schema 1"):
        parse_manifest(json.dumps(doc).encode(), m.DOCKER_SCHEMA1_SIGNED)


def test_not_json_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_manifest(b"<html>")
    with pytest.raises(InvalidArgument, match="JSON object"):
        parse_manifest(b"[]")


def test_artifacts_and_unknown_layers_are_not_images() -> None:
    helm = _manifest_doc(
        config={"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": _d(1), "size": 1}
    )
    parsed = parse_manifest(json.dumps(helm).encode())
    assert isinstance(parsed, ImageManifest)
    with pytest.raises(InvalidArgument, match="is not a container image"):
        parsed.check_is_image("chart:1")
    odd = _manifest_doc(layers=[{"mediaType": "application/x-foo", "digest": _d(2), "size": 1}])
    parsed = parse_manifest(json.dumps(odd).encode())
    assert isinstance(parsed, ImageManifest)
    with pytest.raises(InvalidArgument, match="unsupported layer media type application/x-foo"):
        parsed.check_is_image("img")


def test_descriptor_json_round_trip() -> None:
    raw = {
        "mediaType": m.OCI_MANIFEST,
        "digest": _d(9),
        "size": 3,
        "annotations": {"a": "b"},
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    desc = Descriptor.from_json(raw, "x")
    assert desc.to_json() == raw


@pytest.mark.parametrize(
    ("wanted", "platforms", "expected"),
    [
        # exact match wins over order
        (
            Platform("linux", "amd64"),
            [{"os": "linux", "architecture": "arm64"}, {"os": "linux", "architecture": "amd64"}],
            1,
        ),
        # arm64 without variant means v8
        (Platform("linux", "arm64", "v8"), [{"os": "linux", "architecture": "arm64"}], 0),
        # older arm variant runs on newer hardware, exact preferred
        (
            Platform("linux", "arm", "v7"),
            [
                {"os": "linux", "architecture": "arm", "variant": "v6"},
                {"os": "linux", "architecture": "arm", "variant": "v7"},
            ],
            1,
        ),
        (
            Platform("linux", "arm", "v7"),
            [{"os": "linux", "architecture": "arm", "variant": "v6"}],
            0,
        ),
        # architecture aliases are normalized
        (Platform("linux", "x86_64"), [{"os": "linux", "architecture": "amd64"}], 0),
    ],
)
def test_platform_selection(
    wanted: Platform, platforms: list[dict[str, str]], expected: int
) -> None:
    index = _index(*platforms)
    assert index.select(wanted, "img").digest == _d(100 + expected)


def test_no_matching_platform_lists_what_is_available() -> None:
    index = _index(
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "unknown", "architecture": "unknown"},
        None,
        {"os": "windows", "architecture": "amd64"},
    )
    with pytest.raises(NotFound) as info:
        index.select(Platform("linux", "amd64"), "docker.io/library/x:1")
    assert info.value.message == (
        "no image for platform linux/amd64 in docker.io/library/x:1, available: "
        "linux/arm/v7, unknown/unknown, windows/amd64"
    )
    # A newer variant than the host has does not run on it.
    with pytest.raises(NotFound):
        index.select(Platform("linux", "arm", "v6"), "img")


def test_host_platform_uses_goarch_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m._platform, "machine", lambda: "x86_64")
    assert Platform.host() == Platform("linux", "amd64")
    monkeypatch.setattr(m._platform, "machine", lambda: "aarch64")
    assert Platform.host() == Platform("linux", "arm64", "v8")
    monkeypatch.setattr(m._platform, "machine", lambda: "armv7l")
    assert str(Platform.host()) == "linux/arm/v7"


def test_platform_parse() -> None:
    assert Platform.parse("linux/arm64") == Platform("linux", "arm64", "v8")
    assert Platform.parse("linux/arm/v6") == Platform("linux", "arm", "v6")
    assert Platform.parse("amd64") == Platform("linux", "amd64")
    with pytest.raises(InvalidArgument, match="os/arch"):
        Platform.parse("linux/")


def test_sha256_digest() -> None:
    assert sha256_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
