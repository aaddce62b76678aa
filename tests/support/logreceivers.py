"""Real log receivers for the log driver tests, run by the tests as the test user.

- Rsyslog: Debian's rsyslogd in the foreground (-n) with its own config, work
  dir and pid file: imuxsock on a private datagram socket, imptcp on a private
  stream socket and a loopback port, imudp on a loopback port, imtcp with
  GnuTLS on a loopback port (a test CA made with openssl). The system's
  rsyslog, if any, is never touched.
- ForwardReceiver: a Fluentd Forward protocol server (msgpack; Message,
  Forward and PackedForward modes; acks for chunk options) on tcp or unix.
- MotoServer: moto's server mode as the CloudWatch Logs endpoint, recording
  every request so tests can check the batches themselves.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RSYSLOGD = "/usr/sbin/rsyslogd"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class TestCA:
    ca: Path
    cert: Path
    key: Path


def make_test_ca(root: Path) -> TestCA:
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    root.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=runtimed test CA")  # fmt: skip
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1")  # fmt: skip
    (root / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return TestCA(root / "ca.pem", root / "server.pem", root / "server.key")


# -- rsyslog ---------------------------------------------------------------------------

RSYSLOG_CONF = """\
global(workDirectory="{root}/work" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{root}/dgram.sock" RateLimit.Interval="0" UseSpecialParser="off")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}")
module(load="imptcp")
input(type="imptcp" address="127.0.0.1" port="{tcp}")
input(type="imptcp" path="{root}/stream.sock")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" address="127.0.0.1" port="{tls}")
template(name="fields" type="string"
         string="%inputname%|%syslogfacility%|%syslogseverity%|%app-name%|%procid%|%msg%\\n")
action(type="omfile" file="{root}/out.log" template="fields")
"""


@dataclass
class SyslogLine:
    input: str  # imuxsock | imptcp | imudp | imtcp
    facility: int
    severity: int
    app: str
    procid: str
    msg: str


class Rsyslog:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "work").mkdir(exist_ok=True)
        self.ca = make_test_ca(root / "ca")
        self.udp, self.tcp, self.tls = free_port(socket.SOCK_DGRAM), free_port(), free_port()
        self.dgram = root / "dgram.sock"
        self.stream = root / "stream.sock"
        self.out = root / "out.log"
        self.conf = root / "rsyslog.conf"
        self.conf.write_text(
            RSYSLOG_CONF.format(
                root=root,
                ca=self.ca.ca,
                cert=self.ca.cert,
                key=self.ca.key,
                udp=self.udp,
                tcp=self.tcp,
                tls=self.tls,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Rsyslog:
        for sock in (self.dgram, self.stream):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        log = (self.root / "rsyslogd.log").open("ab")
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.root / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited:\n{(self.root / 'rsyslogd.log').read_text()}")
            if not (self.dgram.exists() and self.stream.exists()):
                return False
            for port in (self.tcp, self.tls):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                except OSError:
                    return False
            return True

        wait_until(listening, 15, "rsyslogd to listen")
        return self

    def kill(self) -> None:
        """Gone at once, as a crash or a network cut looks to a sender."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def lines(self) -> list[SyslogLine]:
        if not self.out.exists():
            return []
        out = []
        for raw in self.out.read_text(errors="replace").splitlines():
            parts = raw.split("|", 5)
            if len(parts) == 6:
                out.append(
                    SyslogLine(parts[0], int(parts[1]), int(parts[2]), parts[3], parts[4], parts[5])
                )
        return out


# -- fluentd forward -------------------------------------------------------------------


@dataclass
class ForwardEvent:
    tag: str
    time: Any  # int seconds, or (seconds, nanoseconds) for EventTime
    record: dict[str, Any]


def _ext_hook(code: int, data: bytes) -> Any:
    import msgpack

    if code == 0 and len(data) == 8:
        return (int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))
    return msgpack.ExtType(code, data)


class ForwardReceiver:
    """A Forward protocol server; `acks` counts chunks acknowledged."""

    def __init__(self, *, port: int = 0, path: Path | None = None) -> None:
        self.port = port or free_port()
        self.path = path
        self.events: list[ForwardEvent] = []
        self.acks = 0
        self.messages = 0
        self.lock = threading.Lock()
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        return f"unix://{self.path}" if self.path else f"tcp://127.0.0.1:{self.port}"

    def start(self) -> ForwardReceiver:
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(self.path))
        else:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.server = server
        thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        import msgpack

        unpacker = msgpack.Unpacker(raw=False, ext_hook=_ext_hook, unicode_errors="surrogateescape")
        while True:
            try:
                data = conn.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            unpacker.feed(data)
            for message in unpacker:
                ack = self._message(message)
                if ack is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(msgpack.packb({"ack": ack}))

    def _message(self, message: list[Any]) -> str | None:
        import msgpack

        tag, second = message[0], message[1]
        option: dict[str, Any] = {}
        events: list[ForwardEvent] = []
        if isinstance(second, list):  # Forward mode
            events = [ForwardEvent(tag, t, r) for t, r in second]
            option = message[2] if len(message) > 2 else {}
        elif isinstance(second, bytes | bytearray):  # PackedForward
            option = message[2] if len(message) > 2 else {}
            blob = bytes(second)
            if option.get("compressed") == "gzip":
                blob = gzip.decompress(blob)
            unpacker = msgpack.Unpacker(raw=False, ext_hook=_ext_hook)
            unpacker.feed(blob)
            events = [ForwardEvent(tag, t, r) for t, r in unpacker]
        else:  # Message mode
            events = [ForwardEvent(tag, second, message[2])]
            option = message[3] if len(message) > 3 else {}
        with self.lock:
            self.events.extend(events)
            self.messages += 1
            if option and option.get("chunk"):
                self.acks += 1
                return option["chunk"]
        return None

    def logs(self) -> list[str]:
        with self.lock:
            return [e.record.get("log", "") for e in self.events]


# -- moto ------------------------------------------------------------------------------

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


class MotoServer:
    """moto's server on a loopback port, recording requests to a file."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.recording = root / "requests.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        env = dict(
            os.environ,
            MOTO_ENABLE_RECORDING="True",
            MOTO_RECORDER_FILEPATH=str(self.recording),
            **AWS_ENV,
        )
        log = (self.root / "moto.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"moto exited:\n{(self.root / 'moto.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            except OSError:
                return False
            return True

        wait_until(up, 30, "moto to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "logs",
            endpoint_url=self.endpoint,
            region_name=AWS_ENV["AWS_REGION"],
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def events(self, group: str, stream: str) -> list[dict[str, Any]]:
        client = self.client()
        out: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            try:
                page = client.get_log_events(**kwargs)
            except client.exceptions.ResourceNotFoundException:
                return out  # not made yet
            out += page["events"]
            if not page["events"] or page.get("nextForwardToken") == token:
                return out
            token = page.get("nextForwardToken")

    def put_requests(self) -> list[dict[str, Any]]:
        """Bodies of every PutLogEvents request moto received."""
        found = []
        if not self.recording.exists():
            return found
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            if not str(entry["headers"].get("X-Amz-Target", "")).endswith(".PutLogEvents"):
                continue
            body = entry["body"]
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            found.append(json.loads(body))
        return found


def cleanup_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
