from __future__ import annotations

import pytest

from runtimed.errors import InvalidArgument
from runtimed.images.reference import Reference, is_digest, parse_reference, validate_digest

SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("localhost/foo", "localhost/foo:latest", "localhost/foo:latest"),
        ("localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1"),
        (
            "127.0.0.1:5000/library/busybox",
            "127.0.0.1:5000/library/busybox:latest",
            "127.0.0.1:5000/library/busybox:latest",
        ),
        ("quay.io/a/b/c:9", "quay.io/a/b/c:9", "quay.io/a/b/c:9"),
        ("[::1]:5000/foo", "[::1]:5000/foo:latest", "[::1]:5000/foo:latest"),
        ("ns/a.b-c__d---e", "docker.io/ns/a.b-c__d---e:latest", "ns/a.b-c__d---e:latest"),
        ("repo_name.x-y:Tag_1.0-rc", "docker.io/library/repo_name.x-y:Tag_1.0-rc", None),
        (f"busybox@{SHA}", f"docker.io/library/busybox@{SHA}", f"busybox@{SHA}"),
        (f"busybox:1.2@{SHA}", f"docker.io/library/busybox:1.2@{SHA}", f"busybox:1.2@{SHA}"),
    ],
)
def test_valid_references_normalize_like_docker(
    text: str, canonical: str, familiar: str | None
) -> None:
    ref = parse_reference(text)
    assert str(ref) == canonical
    if familiar is not None:
        assert ref.familiar() == familiar
    # The canonical form parses back to the same reference.
    assert parse_reference(canonical) == ref


def test_fields_and_familiar_name() -> None:
    ref = parse_reference("busybox")
    assert ref == Reference("docker.io", "library/busybox", "latest", None)
    assert ref.name == "docker.io/library/busybox"
    assert ref.familiar_name() == "busybox"
    assert parse_reference("user/app").familiar_name() == "user/app"
    assert (
        parse_reference("127.0.0.1:5000/library/busybox").familiar_name()
        == "127.0.0.1:5000/library/busybox"
    )


def test_digest_keeps_tag_none_and_wins_for_fetching() -> None:
    by_digest = parse_reference(f"busybox@{SHA}")
    assert by_digest.tag is None
    assert by_digest.digest == SHA
    assert by_digest.fetch_reference == SHA
    both = parse_reference(f"busybox:1.36@{SHA}")
    assert (both.tag, both.digest) == ("1.36", SHA)
    assert both.fetch_reference == SHA
    assert parse_reference("busybox:1.36").fetch_reference == "1.36"


def test_port_without_path_is_a_tag_like_docker() -> None:
    ref = parse_reference("localhost:5000")
    assert (ref.domain, ref.path, ref.tag) == ("docker.io", "library/localhost", "5000")


def test_with_tag_and_with_digest() -> None:
    ref = parse_reference("busybox")
    assert str(ref.with_tag("1.0")) == "docker.io/library/busybox:1.0"
    assert str(ref.with_tag(None).with_digest(SHA)) == f"docker.io/library/busybox@{SHA}"
    with pytest.raises(InvalidArgument, match="invalid tag format"):
        ref.with_tag("-bad")
    with pytest.raises(InvalidArgument, match="invalid digest"):
        ref.with_digest("sha256:1234")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty reference"),
        ("Busybox", "repository name must be lowercase"),
        ("docker.io/Library/busybox", "repository name must be lowercase"),
        ("busybox:", "invalid tag format"),
        ("busybox:-x", "invalid tag format"),
        ("busybox:" + "a" * 129, "invalid tag format"),
        ("busybox@sha256:abc", "invalid digest format"),
        ("busybox@sha256:" + "AB" * 32, "hex must be lowercase"),
        ("busybox@sha512:" + "ab" * 32, "expected 128 hex characters"),
        ("busybox@md5:" + "ab" * 16, "unsupported digest algorithm"),
        ("ab" * 32, "cannot specify 64-byte hexadecimal strings"),
        ("foo//bar", "empty path component"),
        ("foo/bar_", "invalid repository path component"),
        ("-foo", "invalid repository path component"),
        ("foo..bar", "invalid repository path component"),
        ("foo___bar", "invalid repository path component"),
        (":tag", "must have at least one component"),
        ("exa_mple.com/foo", "invalid registry domain"),
        ("-bad.com/foo", "invalid registry domain"),
        ("example.com/" + "a" * 250, "must not be more than 255 characters"),
    ],
)
def test_invalid_references_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_reference(text)
    assert info.value.message.startswith("invalid")
    assert reason in info.value.message


def test_lowercase_message_matches_docker_wording() -> None:
    with pytest.raises(
        InvalidArgument, match="^invalid reference format: repository name must be lowercase"
    ):
        parse_reference("Busybox")


def test_name_length_limit_is_inclusive() -> None:
    path = "a" * (255 - len("example.com/"))
    assert parse_reference(f"example.com/{path}").path == path


def test_digest_helpers() -> None:
    assert validate_digest(SHA) == SHA
    assert is_digest("sha512:" + "0" * 128)
    assert not is_digest("sha256:" + "0" * 63)
    assert not is_digest("latest")
