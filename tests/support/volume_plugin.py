"""A Docker volume plugin for the tests: the real HTTP protocol on a unix socket.

Volumes are directories under --root; Mount hands out <root>/<name> and counts
mount ids per volume (Docker's contract: Unmount with the same id releases).
Every call is appended to --log as a JSON line, so tests see exactly what the
daemon asked. Failures are injected through <root>/../control.json:
{"fail": {"VolumeDriver.Mount": "disk on fire"}} makes that method answer Err.

Run: python -m tests.support.volume_plugin --socket S --root DIR --log FILE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

MIME = "application/vnd.docker.plugins.v1.2+json"


class PluginState:
    def __init__(self, root: Path, log: Path, control: Path) -> None:
        self.root = root
        self.log = log
        self.control = control
        self.lock = threading.Lock()
        self.mounts: dict[str, set[str]] = {}
        self.created: dict[str, str] = {}

    def failure(self, method: str) -> str:
        try:
            doc = json.loads(self.control.read_text())
        except (OSError, ValueError):
            return ""
        return str((doc.get("fail") or {}).get(method) or "")

    def record(self, method: str, body: dict[str, Any], answer: dict[str, Any]) -> None:
        with self.log.open("a") as f:
            f.write(json.dumps({"method": method, "body": body, "answer": answer}) + "\n")

    def handle(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        err = self.failure(method)
        if err:
            return {"Err": err}
        name = str(body.get("Name") or "")
        path = self.root / name
        if method == "Plugin.Activate":
            return {"Implements": ["VolumeDriver"]}
        if method == "VolumeDriver.Capabilities":
            return {"Capabilities": {"Scope": "global"}}
        if method == "VolumeDriver.Create":
            path.mkdir(exist_ok=True)
            (path.parent / f".{name}.opts").write_text(json.dumps(body.get("Opts") or {}))
            self.created.setdefault(name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            return {"Err": ""}
        if method == "VolumeDriver.List":
            return {
                "Volumes": [
                    {"Name": p.name, "Mountpoint": str(p) if self.mounts.get(p.name) else ""}
                    for p in sorted(self.root.iterdir())
                    if p.is_dir()
                ],
                "Err": "",
            }
        if not path.is_dir():
            return {"Err": f"no such volume {name}"}
        if method == "VolumeDriver.Get":
            opts_file = path.parent / f".{name}.opts"
            opts = json.loads(opts_file.read_text()) if opts_file.exists() else {}
            return {
                "Volume": {
                    "Name": name,
                    "Mountpoint": str(path) if self.mounts.get(name) else "",
                    "CreatedAt": self.created.get(name, ""),
                    "Status": {"mounts": len(self.mounts.get(name, ())), "opts": opts},
                },
                "Err": "",
            }
        if method == "VolumeDriver.Path":
            return {"Mountpoint": str(path) if self.mounts.get(name) else "", "Err": ""}
        if method == "VolumeDriver.Mount":
            self.mounts.setdefault(name, set()).add(str(body.get("ID")))
            return {"Mountpoint": str(path), "Err": ""}
        if method == "VolumeDriver.Unmount":
            ids = self.mounts.get(name, set())
            if str(body.get("ID")) not in ids:
                return {"Err": f"volume {name} is not mounted with id {body.get('ID')}"}
            ids.discard(str(body.get("ID")))
            return {"Err": ""}
        if method == "VolumeDriver.Remove":
            if self.mounts.get(name):
                return {"Err": f"volume {name} is mounted"}
            for child in sorted(path.rglob("*"), reverse=True):
                child.rmdir() if child.is_dir() else child.unlink()
            path.rmdir()
            return {"Err": ""}
        return {"Err": f"unknown method {method}"}


def make_handler(state: PluginState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def address_string(self) -> str:
            return "unix"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            method = self.path.lstrip("/")
            with state.lock:
                answer = state.handle(method, body)
                state.record(method, body, answer)
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", MIME)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(socket_path: Path, root: Path, log: Path, control: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    server = _Server(str(socket_path), make_handler(PluginState(root, log, control)))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


class VolumePlugin:
    """Start the plugin as a process; ask what it was asked; make it fail or go down."""

    def __init__(self, plugin_dir: Path, name: str, work: Path) -> None:
        self.name = name
        self.socket = plugin_dir / f"{name}.sock"
        self.root = work / "volumes"
        self.log = work / "calls.jsonl"
        self.control = work / "control.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VolumePlugin:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # a stopped plugin's socket would pass for a live one
        repo = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=str(repo))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.volume_plugin",
                "--socket",
                str(self.socket),
                "--root",
                str(self.root),
                "--log",
                str(self.log),
                "--control",
                str(self.control),
            ],
            env=env,
        )
        deadline = time.monotonic() + 10
        while not self.socket.is_socket():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the test volume plugin did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Down: the process is gone, its socket file stays (connections are refused)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def fail(self, method: str, message: str) -> None:
        self.control.write_text(json.dumps({"fail": {method: message}}))

    def heal(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        found = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [c for c in found if method is None or c["method"] == method]

    def active_mounts(self) -> dict[str, list[str]]:
        """Mount ids handed out and not yet released, by volume (from the call log)."""
        active: dict[str, list[str]] = {}
        for call in self.calls():
            name, ident = call["body"].get("Name"), call["body"].get("ID")
            if call["answer"].get("Err"):
                continue
            if call["method"] == "VolumeDriver.Mount":
                active.setdefault(name, []).append(ident)
            elif call["method"] == "VolumeDriver.Unmount" and ident in active.get(name, []):
                active[name].remove(ident)
        return {k: v for k, v in active.items() if v}

    @contextlib.contextmanager
    def running(self) -> Iterator[VolumePlugin]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--control", required=True, type=Path)
    args = parser.parse_args()
    serve(args.socket, args.root, args.log, args.control)


if __name__ == "__main__":
    main()
