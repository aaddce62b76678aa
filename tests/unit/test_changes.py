"""`import --change` instructions."""

from __future__ import annotations

import pytest

from runtimed.errors import InvalidArgument
from runtimed.images.changes import apply_changes


def test_each_instruction() -> None:
    cfg = apply_changes(
        {"Env": ["A=1"]},
        [
            'CMD ["/bin/sh", "-c", "echo hi"]',
            "ENTRYPOINT /init --flag",
            "ENV A=2 B=three",
            "LABEL org.example=yes",
            "EXPOSE 80 53/udp",
            "USER 1000:1000",
            "WORKDIR /srv",
            "VOLUME /data /cache",
            "STOPSIGNAL SIGINT",
        ],
    )
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/init --flag"]
    assert cfg["Env"] == ["A=2", "B=three"]
    assert cfg["Labels"] == {"org.example": "yes"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["User"] == "1000:1000" and cfg["WorkingDir"] == "/srv"
    assert cfg["Volumes"] == {"/data": {}, "/cache": {}}
    assert cfg["StopSignal"] == "SIGINT"


def test_unknown_or_empty_instruction_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not a valid change command"):
        apply_changes({}, ["RUN rm -rf /"])
    with pytest.raises(InvalidArgument, match="requires an argument"):
        apply_changes({}, ["CMD"])
