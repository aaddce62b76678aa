"""The fluentd driver: the Forward protocol over tcp, tls or a unix socket.

Records carry `container_id`, `container_name`, `source`, `log` (and the
labels/env attributes asked for); the chunks of a line longer than 16 KiB
carry Docker's `partial_message`, `partial_id`, `partial_ordinal`,
`partial_last`. Records go out in Forward mode (`[tag, [[time, record]...],
option]`); with fluentd-request-ack each message carries a chunk id the
receiver must acknowledge before it counts as delivered. Times are integer
seconds, or EventTime (fluent-logger's) with fluentd-sub-second-precision.

Without fluentd-async a fluentd that cannot be reached fails the container
start; with it the container starts at once and up to fluentd-buffer-limit
records wait for fluentd to appear (more are dropped and counted).
"""

from __future__ import annotations

import os
import socket

from runtimed_shim.logdriver import (
    ATTR_OPTS,
    LogInfo,
    OptionError,
    PartialTracker,
    Undelivered,
    check_keys,
    parse_bool,
    parse_duration,
    ram_in_bytes,
)

from runtimed_plugins.logdrivers._net import peer_open

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ADDRESS = "fluentd-address"
ASYNC = "fluentd-async"
ASYNC_CONNECT = "fluentd-async-connect"  # Docker's deprecated spelling of fluentd-async
BUFFER_LIMIT = "fluentd-buffer-limit"
MAX_RETRIES = "fluentd-max-retries"
REQUEST_ACK = "fluentd-request-ack"
RETRY_WAIT = "fluentd-retry-wait"
SUB_SECOND = "fluentd-sub-second-precision"
OPTS = (
    ADDRESS,
    ASYNC,
    ASYNC_CONNECT,
    BUFFER_LIMIT,
    MAX_RETRIES,
    REQUEST_ACK,
    RETRY_WAIT,
    SUB_SECOND,
    *ATTR_OPTS,
)
DEFAULT_PORT = 24224
DEFAULT_BUFFER_LIMIT = 1024 * 1024
DEFAULT_RETRY_WAIT = 1.0
MAX_RETRY_WAIT = 60.0
CHUNK_BYTES = 1 << 20
IO_TIMEOUT = 15.0


def parse_address(address: str) -> tuple[str, Any]:
    """("tcp"|"tls", (host, port)) or ("unix", path)."""
    if not address:
        return "tcp", ("127.0.0.1", DEFAULT_PORT)
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme == "unix":
            return "unix", rest if rest.startswith("/") else "/" + rest.partition("/")[2]
        if scheme not in ("tcp", "tls"):
            raise OptionError(f"invalid fluentd-address {address}: unsupported scheme '{scheme}'")
        hostport = rest.split("/", 1)[0]
    else:
        scheme, hostport = "tcp", address
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if not port:
        return scheme, (host, DEFAULT_PORT)
    if not port.isdigit():
        raise OptionError(
            f'invalid fluentd-address {address}: strconv.Atoi: parsing "{port}": invalid syntax'
        )
    return scheme, (host, int(port))


class Settings:
    def __init__(self, opts: dict[str, str]) -> None:
        self.kind, self.target = parse_address(opts.get(ADDRESS, ""))
        self.buffer_limit = DEFAULT_BUFFER_LIMIT
        if opts.get(BUFFER_LIMIT):
            self.buffer_limit = ram_in_bytes(opts[BUFFER_LIMIT])
        self.retry_wait = DEFAULT_RETRY_WAIT
        if opts.get(RETRY_WAIT):
            self.retry_wait = parse_duration(opts[RETRY_WAIT])
        self.max_retries = (1 << 31) - 1
        if opts.get(MAX_RETRIES):
            text = opts[MAX_RETRIES]
            if not text.isdigit():
                raise OptionError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
            self.max_retries = int(text)
        if opts.get(ASYNC) and opts.get(ASYNC_CONNECT):
            raise OptionError(
                f"conflicting options: cannot specify both '{ASYNC}' and '{ASYNC_CONNECT}'"
            )
        self.asynchronous = any(parse_bool(opts[k]) for k in (ASYNC, ASYNC_CONNECT) if opts.get(k))
        self.sub_second = parse_bool(opts[SUB_SECOND]) if opts.get(SUB_SECOND) else False
        self.request_ack = parse_bool(opts[REQUEST_ACK]) if opts.get(REQUEST_ACK) else False


class Plugin:
    name = "fluentd"
    read_format = None

    def validate(self, opts: dict[str, str]) -> None:
        check_keys(opts, OPTS, self.name)
        Settings(opts)

    def open(self, info: LogInfo) -> FluentdDriver:
        settings = Settings(info.config)
        driver = FluentdDriver(settings, info)
        if not settings.asynchronous and info.mode != "non-blocking":
            driver.connect()
        return driver


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


class FluentdDriver:
    threaded = True

    def __init__(self, settings: Settings, info: LogInfo) -> None:
        import msgpack  # only in shims of containers that log to fluentd
        from fluent.sender import EventTime

        self.settings = settings
        self.msgpack = msgpack
        self.event_time = EventTime.from_unix_nano
        self.packer = msgpack.Packer(use_bin_type=False)  # Go sends bytes as msgpack str
        self.tag = info.tag()
        base = {
            "container_id": info.container_id,
            "container_name": info.container_name,
            **info.extra_attributes(),
        }
        self.base = {s: dict(base, source=s) for s in ("stdout", "stderr")}
        self.partials = PartialTracker()
        self.sock: socket.socket | None = None
        if settings.asynchronous:
            # The driver's own buffer: past it new records are refused, never waited for.
            self.overflow = "drop-newest"
            self.max_queued_lines = settings.buffer_limit

    # -- connection --------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        kind, target = self.settings.kind, self.settings.target
        family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
        if kind != "unix" and ":" in target[0]:
            family = socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(IO_TIMEOUT)
        where = target if kind == "unix" else f"{target[0]}:{target[1]}"
        try:
            sock.connect(target)
            if kind == "tls":
                import ssl

                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target[0])
        except OSError as exc:
            sock.close()
            network = "unix" if kind == "unix" else "tcp"
            reason = (exc.strerror or str(exc)).lower()
            raise ConnectionError(f"dial {network} {where}: connect: {reason}") from None
        self.sock = sock

    def _alive(self) -> bool:
        sock = self.sock
        if sock is None:
            return False
        return peer_open(sock)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def retry_delay(self, attempt: int) -> float | None:
        if attempt >= self.settings.max_retries:
            return None
        return min(self.settings.retry_wait * 1.5**attempt, MAX_RETRY_WAIT)

    # -- records -----------------------------------------------------------------

    def encode(self, stream: str, runs: list[Any], time_ns: int) -> list[bytes]:
        """One packed `[time, record]` entry per line."""
        stamp: Any = self.event_time(time_ns) if self.settings.sub_second else time_ns // 10**9
        base = self.base.get(stream) or dict(self.base["stdout"], source=stream)
        pack = self.packer.pack
        mark = self.partials.mark
        items = []
        for pieces, complete in runs:
            for line in pieces:
                record = dict(base, log=line)
                partial = mark(stream, complete)
                if partial is not None:
                    record["partial_message"] = "true"
                    record["partial_id"] = partial[0]
                    record["partial_ordinal"] = str(partial[1])
                    record["partial_last"] = "true" if partial[2] else "false"
                items.append(pack([stamp, record]))
        return items

    def send(self, items: list[bytes]) -> None:
        if not self._alive():
            self.connect()
        sock = self.sock
        assert sock is not None
        done = 0
        try:
            while done < len(items):
                end, size = done, 0
                while end < len(items) and (end == done or size + len(items[end]) <= CHUNK_BYTES):
                    size += len(items[end])
                    end += 1
                self._send_chunk(sock, items[done:end])
                done = end
        except (OSError, ValueError) as exc:
            self.close()
            raise Undelivered(done, str(exc) or type(exc).__name__) from None

    def _send_chunk(self, sock: socket.socket, entries: list[bytes]) -> None:
        option: dict[str, Any] = {"size": len(entries)}
        chunk = ""
        if self.settings.request_ack:
            import base64

            chunk = base64.b64encode(os.urandom(16)).decode()
            option["chunk"] = chunk
        message = (
            b"\x93"
            + self.packer.pack(self.tag)
            + _array_header(len(entries))
            + b"".join(entries)
            + self.packer.pack(option)
        )
        sock.sendall(message)
        if chunk:
            self._await_ack(sock, chunk)

    def _await_ack(self, sock: socket.socket, chunk: str) -> None:
        unpacker = self.msgpack.Unpacker(raw=False)
        while True:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("fluentd closed the connection before acknowledging")
            unpacker.feed(data)
            for answer in unpacker:
                if isinstance(answer, dict) and answer.get("ack") == chunk:
                    return
                raise ValueError(f"fluentd answered {answer!r}, not the ack of chunk {chunk}")


PLUGIN = Plugin()
