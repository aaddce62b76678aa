"""Docker volume plugins: their HTTP protocol over a unix socket (or TCP), and discovery.

A plugin is found by name in runtimed's plugin directories, in order:

    $XDG_RUNTIME_DIR/runtimed/plugins/   (the run dir: sockets plugins create)
    $XDG_CONFIG_HOME/runtimed/plugins/   (~/.config/runtimed/plugins: spec files)

as `NAME.sock`, `NAME/NAME.sock`, `NAME.spec` (one line: unix:///path or
tcp://host:port) or `NAME.json` ({"Name": ..., "Addr": ...}), as Docker looks
in /run/docker/plugins and /etc/docker/plugins. Every call is a POST of a JSON
object; an answer with a non-empty "Err" is the plugin refusing, and is
reported with the plugin's own words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog

from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from runtimed.volumes.driver import VolumeInfo

log = structlog.get_logger(__name__)

MIME = "application/vnd.docker.plugins.v1.2+json"
CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 30.0
_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class PluginAddress:
    name: str
    url: str  # unix:///path/x.sock or tcp://host:port
    found_in: str  # the file that named it

    @property
    def socket(self) -> str | None:
        return self.url[len("unix://") :] if self.url.startswith("unix://") else None


def _spec_url(path: Path) -> str:
    text = path.read_text().strip()
    if path.suffix == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(f"plugin spec {path} is not valid JSON: {exc}") from None
        if doc.get("TLSConfig"):
            raise InvalidArgument(f"plugin spec {path}: TLS connections are not supported")
        text = str(doc.get("Addr") or "")
    if not text.startswith(("unix://", "tcp://")):
        raise InvalidArgument(
            f"plugin spec {path}: address {text!r} must start with unix:// or tcp://"
        )
    if text.startswith("unix://") and not text[len("unix://") :].startswith("/"):
        raise InvalidArgument(f"plugin spec {path}: unix socket path must be absolute")
    return text


def find_plugin(name: str, dirs: list[Path]) -> PluginAddress | None:
    """The first socket or spec file for `name` in `dirs`, or None."""
    if not _PLUGIN_NAME.fullmatch(name):
        return None
    for base in dirs:
        for sock in (base / f"{name}.sock", base / name / f"{name}.sock"):
            if sock.is_socket():
                return PluginAddress(name, f"unix://{sock}", str(sock))
        for ext in (".spec", ".json"):
            spec = base / f"{name}{ext}"
            if spec.is_file():
                return PluginAddress(name, _spec_url(spec), str(spec))
    return None


def discover(dirs: list[Path]) -> tuple[list[PluginAddress], list[str]]:
    """Every plugin in `dirs` (first one wins per name) and the problems met on the way."""
    found: dict[str, PluginAddress] = {}
    problems: list[str] = []
    for base in dirs:
        if not base.is_dir():
            continue
        candidates = set()
        for entry in base.iterdir():
            stem = entry.name.rsplit(".", 1)[0] if entry.suffix else entry.name
            if entry.suffix in (".sock", ".spec", ".json") or entry.is_dir():
                candidates.add(stem)
        for name in sorted(candidates):
            if name in found:
                continue
            try:
                address = find_plugin(name, [base])
            except InvalidArgument as exc:
                problems.append(exc.message)
                continue
            if address is not None:
                found[name] = address
    return list(found.values()), problems


class RemoteVolumeDriver:
    """A Docker volume plugin, spoken to over its HTTP protocol."""

    def __init__(self, address: PluginAddress, *, timeout: float = CALL_TIMEOUT) -> None:
        self.name = address.name
        self.address = address
        self._timeout = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
        self._activated = False
        self._scope = ""

    def _client(self) -> httpx.AsyncClient:
        sock = self.address.socket
        if sock is not None:
            transport = httpx.AsyncHTTPTransport(uds=sock)
            return httpx.AsyncClient(
                transport=transport, base_url="http://plugin", timeout=self._timeout
            )
        host = self.address.url[len("tcp://") :]
        return httpx.AsyncClient(base_url=f"http://{host}", timeout=self._timeout)

    async def _post(self, method: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body or {}).encode()
        try:
            async with self._client() as client:
                reply = await client.post(
                    f"/{method}",
                    content=data,
                    headers={"Accept": MIME, "Content-Type": MIME},
                )
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"volume plugin {self.name!r} at {self.address.url} is not reachable "
                f"({method}): {exc or type(exc).__name__}"
            ) from None
        try:
            doc = reply.json() if reply.content else {}
        except ValueError:
            doc = {"Err": reply.text.strip() or f"HTTP {reply.status_code}"}
        if not isinstance(doc, dict):
            doc = {"Err": f"unexpected answer {reply.text[:200]!r}"}
        if reply.status_code == 404 and not doc.get("Err"):
            doc["Err"] = "404 page not found"
        if reply.status_code >= 400 and not doc.get("Err"):
            doc["Err"] = f"HTTP {reply.status_code}: {reply.text.strip()[:200]}"
        return doc

    def _check(self, method: str, doc: dict[str, Any]) -> dict[str, Any]:
        err = str(doc.get("Err") or "")
        if err:
            raise FailedPrecondition(f"volume plugin {self.name!r}: {method}: {err}")
        return doc

    async def activate(self) -> list[str]:
        """Plugin.Activate; refuses a plugin that is not a volume driver."""
        doc = await self._post("Plugin.Activate", None)
        implements = [str(x) for x in doc.get("Implements") or []]
        if doc.get("Err"):
            self._check("Plugin.Activate", doc)
        if "VolumeDriver" not in implements:
            raise FailedPrecondition(
                f"plugin {self.name!r} at {self.address.url} does not implement VolumeDriver "
                f"(it implements {', '.join(implements) or 'nothing'})"
            )
        self._activated = True
        return implements

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self._activated:
            await self.activate()
        return self._check(method, await self._post(method, body))

    async def create(self, name: str, options: dict[str, str]) -> None:
        await self._call("VolumeDriver.Create", {"Name": name, "Opts": dict(options)})

    async def remove(self, name: str) -> None:
        await self._call("VolumeDriver.Remove", {"Name": name})

    async def mount(self, name: str, mount_id: str) -> str:
        doc = await self._call("VolumeDriver.Mount", {"Name": name, "ID": mount_id})
        path = str(doc.get("Mountpoint") or "")
        if not path.startswith("/"):
            raise FailedPrecondition(
                f"volume plugin {self.name!r}: VolumeDriver.Mount of {name!r} returned "
                f"mountpoint {path!r}, not an absolute path"
            )
        return path

    async def unmount(self, name: str, mount_id: str) -> None:
        await self._call("VolumeDriver.Unmount", {"Name": name, "ID": mount_id})

    async def path(self, name: str) -> str:
        doc = await self._call("VolumeDriver.Path", {"Name": name})
        return str(doc.get("Mountpoint") or "")

    async def get(self, name: str) -> VolumeInfo:
        doc = await self._call("VolumeDriver.Get", {"Name": name})
        vol = doc.get("Volume") or {}
        if not vol:
            raise NotFound(f"volume plugin {self.name!r} does not know volume {name!r}")
        return _info(vol)

    async def list(self) -> list[VolumeInfo]:
        doc = await self._call("VolumeDriver.List", {})
        return [_info(v) for v in doc.get("Volumes") or [] if isinstance(v, dict)]

    async def capabilities(self) -> dict[str, Any]:
        if self._scope:
            return {"Scope": self._scope}
        try:
            doc = await self._call("VolumeDriver.Capabilities", {})
        except FailedPrecondition:
            # An older plugin without the endpoint: Docker assumes local scope.
            return {"Scope": "local"}
        caps = doc.get("Capabilities") or {}
        self._scope = str(caps.get("Scope") or "local")
        return {**caps, "Scope": self._scope}


def _info(vol: dict[str, Any]) -> VolumeInfo:
    status = vol.get("Status")
    return VolumeInfo(
        name=str(vol.get("Name") or ""),
        mountpoint=str(vol.get("Mountpoint") or ""),
        created_at=str(vol.get("CreatedAt") or ""),
        status=status if isinstance(status, dict) else {},
    )
