"""/containers/{id}/exec and /exec/{id}: create, start (hijacked), resize, inspect."""

from __future__ import annotations

from runtimed.core.execs import ExecConfig, ExecInstance
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.createconfig import str_slice
from runtimed.dockerapi.http import HIJACKED, Hijacked, Request, Response, json_response, no_content
from runtimed.dockerapi.router import Router
from runtimed.dockerapi.stdio import detach_keys, media_type, relay
from runtimed.errors import InvalidArgument

_TAIL = 512  # bytes of output kept to tell a command that could not run


def exec_failure_code(code: int | None, tail: bytes) -> int | None:
    """crun exec ends with 255 when the command cannot be run; docker reports 127 for a
    missing command and 126 for one that cannot be executed, as runtimectl's run does."""
    if code != 255:
        return code
    text = tail.decode(errors="replace").lower()
    if "executable" not in text:
        return code
    if "not found" in text or "no such file" in text:
        return 127
    if "permission denied" in text or "not permitted" in text:
        return 126
    return code


def register(router: Router, ctx: Context) -> None:
    h = ExecHandlers(ctx)
    router.add("POST", "/containers/{id}/exec", h.create)
    router.add("POST", "/exec/{id}/start", h.start)
    router.add("POST", "/exec/{id}/resize", h.resize)
    router.add("GET", "/exec/{id}/json", h.inspect)


class ExecHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.execs = ctx.execs

    async def create(self, request: Request) -> Response:
        body = await request.json(default={})
        if not isinstance(body, dict):
            raise InvalidArgument("exec: the body must be a JSON object")
        if body.get("Privileged"):
            raise InvalidArgument("privileged exec is not supported by runtimed")
        keys = str(body.get("DetachKeys") or "")
        detach_keys(keys)  # refused now if it does not parse
        config = ExecConfig(
            cmd=str_slice(body.get("Cmd"), "Cmd"),
            env=str_slice(body.get("Env"), "Env"),
            user=str(body.get("User") or ""),
            working_dir=str(body.get("WorkingDir") or ""),
            tty=bool(body.get("Tty")),
            stdin=bool(body.get("AttachStdin")),
            stdout=bool(body.get("AttachStdout")),
            stderr=bool(body.get("AttachStderr")),
            detach_keys=keys,
        )
        instance = self.execs.create(request.params["id"], config)
        size = body.get("ConsoleSize")
        if config.tty and isinstance(size, list) and len(size) == 2 and all(size):
            instance.size = (int(size[0]), int(size[1]))
        return json_response({"Id": instance.id}, 201)

    async def start(self, request: Request) -> Hijacked | Response:
        body = await request.json(default={}) or {}
        instance = self.execs.get(request.params["id"])
        size = body.get("ConsoleSize") if isinstance(body, dict) else None
        if instance.config.tty and isinstance(size, list) and len(size) == 2 and all(size):
            instance.size = (int(size[0]), int(size[1]))
        if isinstance(body, dict) and body.get("Detach"):
            await self.execs.run_detached(instance.id)
            return no_content(200)
        cfg = instance.config
        stream = await self.execs.start(instance.id)
        try:
            conn = await request.hijack(media_type(request, cfg.tty))
        except BaseException:
            await stream.close()
            raise
        tail = bytearray()

        def output(data: bytes) -> None:
            tail.extend(data)
            del tail[:-_TAIL]

        def exited(payload: bytes) -> None:
            self.execs.exited(instance.id, payload)
            instance.exit_code = exec_failure_code(instance.exit_code, bytes(tail))

        try:
            await relay(
                conn,
                stream,
                tty=cfg.tty,
                stdin=cfg.stdin,
                keys=detach_keys(cfg.detach_keys) if cfg.stdin else b"",
                on_exit=exited,
                on_output=output,
            )
        finally:
            self.execs.ended(instance.id)
        return HIJACKED

    async def resize(self, request: Request) -> Response:
        rows, cols = request.int_arg("h", 0), request.int_arg("w", 0)
        if rows <= 0 or cols <= 0:
            raise InvalidArgument(f"invalid terminal size {rows}x{cols}")
        await self.execs.resize(request.params["id"], rows, cols)
        return no_content(200)

    async def inspect(self, request: Request) -> Response:
        return json_response(_doc(self.execs.get(request.params["id"])))


def _doc(instance: ExecInstance) -> dict[str, object]:
    cfg = instance.config
    return {
        "ID": instance.id,
        "Running": instance.running,
        "ExitCode": instance.exit_code,
        "ProcessConfig": {
            "tty": cfg.tty,
            "entrypoint": cfg.cmd[0] if cfg.cmd else "",
            "arguments": cfg.cmd[1:],
            "privileged": False,
            "user": cfg.user,
        },
        "OpenStdin": cfg.stdin,
        "OpenStderr": cfg.stderr,
        "OpenStdout": cfg.stdout,
        "CanRemove": False,
        "ContainerID": instance.container_id,
        "DetachKeys": cfg.detach_keys,
        "Pid": 0,
    }
