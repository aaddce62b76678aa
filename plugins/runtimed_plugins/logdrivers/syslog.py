"""The syslog driver: Docker's options and formats over unix, unixgram, udp, tcp, tcp+tls.

Messages: stdout at severity info, stderr at err, the facility of
syslog-facility (default daemon); empty lines are dropped. Formats as
Docker's syslog writer makes them (the pid is the shim's, the hostname the
host's):

    ""            <PRI>Jan _2 15:04:05 TAG[PID]: MSG
    rfc3164       <PRI>Jan _2 15:04:05 HOST TAG[PID]: MSG
    rfc5424       <PRI>1 2006-01-02T15:04:05Z07:00 HOST TAG PID TAG - MSG
    rfc5424micro  the same with microseconds

each ending in a newline; on tcp+tls the rfc5424 formats are framed with
octet counting (`LEN MSG`). Without an address the local /dev/log is used,
always in the first format.
"""

from __future__ import annotations

import os
import socket
import time

from runtimed_shim.logdriver import ATTR_OPTS, LogInfo, OptionError, Undelivered, check_keys

from runtimed_plugins.logdrivers._net import peer_open

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OPTS = (
    "syslog-address",
    "syslog-facility",
    "syslog-format",
    "syslog-tls-ca-cert",
    "syslog-tls-cert",
    "syslog-tls-key",
    "syslog-tls-skip-verify",
    *ATTR_OPTS,
)
# Names Docker accepts for syslog-facility and their codes (local0-7 are 16-23).
FACILITY_CODES = {
    name: code
    for code, name in enumerate(
        ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron")
        + ("authpriv", "ftp")
    )
} | {f"local{i}": 16 + i for i in range(8)}
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
SCHEMES = ("tcp", "tcp+tls", "udp", "unix", "unixgram")
LOCAL_PATHS = ("/dev/log", "/var/run/syslog", "/var/run/log")
INFO, ERR = 6, 3
CONNECT_TIMEOUT = 10.0
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def parse_address(address: str) -> tuple[str, Any]:
    """("", None) for the local socket, (scheme, path) or (scheme, (host, port))."""
    if not address:
        return "", None
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in SCHEMES:
        raise OptionError(f"syslog-address should be in form proto://address, got {address}")
    if scheme in ("unix", "unixgram"):
        path = rest if rest.startswith("/") else "/" + rest.partition("/")[2]
        if not os.path.exists(path):
            raise OptionError(f"stat {path}: no such file or directory")
        return scheme, path
    host = rest.split("/", 1)[0]
    return scheme, split_host_port(host, 514)


def split_host_port(hostport: str, default_port: int) -> tuple[str, int]:
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":") or str(default_port)
    elif hostport.count(":") > 1:
        raise OptionError(f"address {hostport}: too many colons in address")
    else:
        host, _, port = hostport.partition(":")
        port = port or str(default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError(f'address {hostport}: invalid port "{port}"')
    return host, int(port)


def parse_facility(facility: str) -> int:
    if not facility:
        return FACILITY_CODES["daemon"]
    if facility in FACILITY_CODES:
        return FACILITY_CODES[facility]
    if facility.isdigit() and 0 <= int(facility) <= 23:
        return int(facility)
    raise OptionError("invalid syslog facility")


def parse_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise OptionError("Invalid syslog format")
    return fmt


class Plugin:
    name = "syslog"
    read_format = None

    def validate(self, opts: dict[str, str]) -> None:
        check_keys(opts, OPTS, self.name)
        parse_address(opts.get("syslog-address", ""))
        parse_facility(opts.get("syslog-facility", ""))
        parse_format(opts.get("syslog-format", ""))

    def open(self, info: LogInfo) -> SyslogDriver:
        opts = info.config
        scheme, target = parse_address(opts.get("syslog-address", ""))
        driver = SyslogDriver(
            scheme,
            target,
            facility=parse_facility(opts.get("syslog-facility", "")),
            fmt=parse_format(opts.get("syslog-format", "")) if scheme else "",
            tag=info.tag(),
            hostname=info.hostname,
            tls=_tls_context(opts, target) if scheme == "tcp+tls" else None,
        )
        if info.mode != "non-blocking":
            driver.connect()  # Docker dials at start: a receiver that is not there fails it
        return driver


def _tls_context(opts: dict[str, str], target: tuple[str, int]) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=opts.get("syslog-tls-ca-cert") or None)
    if opts.get("syslog-tls-cert"):
        context.load_cert_chain(opts["syslog-tls-cert"], opts.get("syslog-tls-key") or None)
    if "syslog-tls-skip-verify" in opts:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SyslogDriver:
    threaded = True

    def __init__(
        self,
        scheme: str,
        target: Any,
        *,
        facility: int,
        fmt: str,
        tag: str,
        hostname: str,
        tls: Any = None,
    ) -> None:
        self.scheme = scheme
        self.target = target
        self.facility = facility
        self.fmt = fmt
        self.tag = tag
        self.hostname = hostname
        self.tls = tls
        self.pid = os.getpid()
        self.sock: socket.socket | None = None
        self.datagram = scheme in ("", "udp", "unixgram")
        self.octet_counting = scheme == "tcp+tls" and fmt.startswith("rfc5424")
        self._stamp_cache: tuple[int, str, str] = (-1, "", "")

    # -- connection --------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        if not self.scheme:
            self.sock = _local_socket()
            return
        family = socket.AF_UNIX if self.scheme in ("unix", "unixgram") else socket.AF_INET
        if family == socket.AF_INET and ":" in self.target[0]:
            family = socket.AF_INET6
        kind = socket.SOCK_DGRAM if self.datagram else socket.SOCK_STREAM
        sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
        sock.settimeout(CONNECT_TIMEOUT)
        network = "tcp" if self.scheme == "tcp+tls" else self.scheme
        where = self.target if isinstance(self.target, str) else "{}:{}".format(*self.target)
        try:
            sock.connect(self.target)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.target[0])
        except OSError as exc:
            sock.close()
            reason = (exc.strerror or str(exc)).lower()
            raise ConnectionError(f"dial {network} {where}: connect: {reason}") from None
        sock.settimeout(None)
        self.sock = sock

    def _alive(self) -> bool:
        """A stream whose peer has closed reads EOF: sending into it would lose data."""
        sock = self.sock
        if sock is None:
            return False
        if self.datagram:
            return True
        return peer_open(sock)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- messages ----------------------------------------------------------------

    def _stamps(self, time_ns: int) -> tuple[str, str]:
        """(time.Stamp, the rfc5424 timestamp) of a second, in local time."""
        sec = time_ns // 1_000_000_000
        if self._stamp_cache[0] != sec:
            t = time.localtime(sec)
            clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            stamp = f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {clock}"
            off = t.tm_gmtoff or 0
            sign = "+" if off > 0 else "-"
            zone = f"{sign}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}" if off else "Z"
            # \0 marks where rfc5424micro puts the fraction.
            iso = time.strftime("%Y-%m-%dT%H:%M:%S", t) + "\0" + zone
            self._stamp_cache = (sec, stamp, iso)
        return self._stamp_cache[1], self._stamp_cache[2]

    def header(self, severity: int, time_ns: int) -> bytes:
        pri = self.facility * 8 + severity
        stamp, iso = self._stamps(time_ns)
        if self.fmt == "":
            return f"<{pri}>{stamp} {self.tag}[{self.pid}]: ".encode()
        if self.fmt == "rfc3164":
            return f"<{pri}>{stamp} {self.hostname} {self.tag}[{self.pid}]: ".encode()
        frac = ""
        if self.fmt == "rfc5424micro":
            micros = f"{time_ns // 1000 % 1_000_000:06d}".rstrip("0")
            frac = f".{micros}" if micros else ""
        when = iso.replace("\0", frac)
        return f"<{pri}>1 {when} {self.hostname} {self.tag} {self.pid} {self.tag} - ".encode()

    def encode(self, stream: str, runs: list[Any], time_ns: int) -> list[bytes]:
        """Stream transports: one blob per run; datagrams and octet counting: one per line."""
        prefix = self.header(ERR if stream == "stderr" else INFO, time_ns)
        items: list[bytes] = []
        for pieces, _complete in runs:
            lines = [p for p in pieces if p] if b"" in pieces else pieces
            if not lines:
                continue
            if self.octet_counting:
                for line in lines:
                    msg = prefix + line + b"\n"
                    items.append(b"%d " % len(msg) + msg)
            elif self.datagram:
                items.extend([prefix + line + b"\n" for line in lines])
            else:
                items.append(prefix + (b"\n" + prefix).join(lines) + b"\n")
        return items

    def encode_block(self, stream: str, block: bytes, time_ns: int) -> list[bytes]:
        """Lines joined by newlines: on a stream transport, one replace frames them all."""
        empty_line = not block or b"\n\n" in block or block[:1] == b"\n" or block[-1:] == b"\n"
        if self.datagram or self.octet_counting or empty_line:
            return self.encode(stream, [(block.split(b"\n"), True)], time_ns)
        prefix = self.header(ERR if stream == "stderr" else INFO, time_ns)
        return [prefix + block.replace(b"\n", b"\n" + prefix) + b"\n"]

    def send(self, items: list[bytes]) -> None:
        if not self._alive():
            self.connect()
        sock = self.sock
        assert sock is not None
        done = 0
        try:
            # A datagram goes whole or not at all; a stream item is many newline-ended lines.
            for done, item in enumerate(items):  # noqa: B007 - done is read on error
                sock.sendall(item)
            done = len(items)
        except OSError as exc:
            self.close()
            raise Undelivered(done, str(exc)) from None


def _local_socket() -> socket.socket:
    """The local syslog socket: datagram first, then stream, as Docker's writer tries."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        for path in LOCAL_PATHS:
            sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                continue
            return sock
    raise ConnectionError("Unix syslog delivery error")


PLUGIN = Plugin()
