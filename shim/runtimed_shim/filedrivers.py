"""The built-in drivers that write files the daemon reads back (json-file, local, cri) and none.

They are plugins like any other, registered under the `runtimed.log_drivers` entry
point, but they live in the shim package: the launcher has them imported already, so a
shim that uses one shares its pages instead of paying for an import of its own
(importing even a small module after the fork costs a shim about a megabyte of
copied pages). Drivers that talk to receivers live in runtimed_plugins.logdrivers
and are imported only by the shims that use them.
"""

from __future__ import annotations

import os

from runtimed_shim.logdriver import (
    ATTR_OPTS,
    LogInfo,
    OptionError,
    check_keys,
    from_human_size,
    parse_bool,
    parse_int,
)
from runtimed_shim.logs import CriLog, JsonFileLog, LocalLog, NoLog

FILE_OPTS = ("max-file", "max-size", "compress")


def _with_tag(info: LogInfo) -> dict[str, str]:
    """labels/env attributes, plus "tag" only when the user set one (no default)."""
    attrs = info.extra_attributes()
    if info.config.get("tag"):
        tag = info.tag("")
        if tag:
            attrs["tag"] = tag
    return attrs


class JsonFile:
    name = "json-file"
    read_format = "json-file"

    def _settings(self, opts: dict[str, str]) -> tuple[int, int, bool]:
        max_size = 0
        if "max-size" in opts:
            max_size = from_human_size(opts["max-size"])
            if max_size <= 0:
                raise OptionError("max-size must be a positive number")
        max_file = 1
        if "max-file" in opts:
            max_file = parse_int(opts["max-file"])
            if max_file < 1:
                raise OptionError("max-file cannot be less than 1")
        compress = False
        if "compress" in opts:
            compress = parse_bool(opts["compress"])
            if compress and (max_file == 1 or not max_size):
                raise OptionError(
                    "compress cannot be true when max-file is less than 2 or max-size is not set"
                )
        return max_size, max_file, compress

    def validate(self, opts: dict[str, str]) -> None:
        check_keys(opts, FILE_OPTS + ATTR_OPTS, self.name)
        self._settings(opts)

    def open(self, info: LogInfo) -> JsonFileLog:
        max_size, max_file, compress = self._settings(info.config)
        return JsonFileLog(info.log_path, max_size, max_file, compress, attrs=_with_tag(info))


class Local:
    """Docker's compact driver: binary records, 20m x 5 files, compressed rotations."""

    name = "local"
    read_format = "local"

    def _settings(self, opts: dict[str, str]) -> tuple[int, int, bool]:
        max_size, max_file, compress = 20 * 1024 * 1024, 5, True
        if "max-size" in opts:
            try:
                max_size = from_human_size(opts["max-size"])
            except OptionError as exc:
                text = opts["max-size"]
                raise OptionError(f"invalid value for max-size: {text}: {exc}") from None
        if "max-file" in opts:
            try:
                max_file = parse_int(opts["max-file"])
            except OptionError as exc:
                text = opts["max-file"]
                raise OptionError(f"invalid value for max-file: {text}: {exc}") from None
        if "compress" in opts:
            try:
                compress = parse_bool(opts["compress"])
            except OptionError as exc:
                raise OptionError(f"invalid boolean value for compress: {exc}") from None
        if max_size < 0:
            raise OptionError("max-size must not be negative")
        if max_file < 0:
            raise OptionError("max-file must not be negative")
        if compress and max_file <= 1:
            raise OptionError("compression cannot be enabled when max file count is 1")
        return max_size, max_file, compress

    def validate(self, opts: dict[str, str]) -> None:
        for key in opts:
            if key not in FILE_OPTS + ATTR_OPTS:
                raise OptionError(f"unknown log opt '{key}' for log driver local")
        self._settings(opts)

    def open(self, info: LogInfo) -> LocalLog:
        max_size, max_file, compress = self._settings(info.config)
        os.makedirs(os.path.dirname(info.log_path), mode=0o750, exist_ok=True)
        return LocalLog(info.log_path, max_size, max_file, compress, attrs=_with_tag(info))


class Cri:
    """The Kubernetes CRI format at the path kubelet gives (ReopenContainerLog reopens it)."""

    name = "cri"
    read_format = "cri"

    def validate(self, opts: dict[str, str]) -> None:
        check_keys(opts, (), self.name)

    def open(self, info: LogInfo) -> CriLog:
        return CriLog(info.log_path)


class NoDriver:
    name = "none"
    read_format = None

    def validate(self, opts: dict[str, str]) -> None:
        if opts:
            raise OptionError("invalid logging opts for driver none")

    def open(self, info: LogInfo) -> NoLog:
        return NoLog()


JSON_FILE = JsonFile()
LOCAL = Local()
CRI = Cri()
NONE = NoDriver()
