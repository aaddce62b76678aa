"""Run the real `runtimed` and `runtimectl` as the test user, on a private socket and data dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from runtimed_shim import podinfra

from runtimed.gen.runtime.v1 import api_pb2_grpc
from runtimed.gen.runtimed.v1 import engine_pb2_grpc

BIN = Path(sys.executable).parent


def remove_tree(path: Path) -> None:
    """Remove a tree that holds files owned by our subordinate ids (as a userns root would)."""
    if not path.exists():
        return
    if os.geteuid() != 0 and shutil.which("unshare"):
        subprocess.run(
            ["unshare", "--user", "--map-auto", "--map-root-user", "rm", "-rf", str(path)],
            check=False,
        )
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.splitlines()


class Daemon:
    def __init__(
        self,
        root: Path | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        data_dir: Path | None = None,
    ) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="runtimed-test-"))
        # Elsewhere only when a test needs another filesystem (a small one): removed too.
        self.data_dir = data_dir or self.root / "data"
        self.socket = self.root / "run" / "runtimed.sock"
        self.log_path = self.root / "daemon.log"
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self.env = dict(os.environ, DOCKER_CONFIG=str(self.root / "docker-config"))

    def argv(self) -> list[str]:
        return [
            str(BIN / "runtimed"),
            "--data-dir",
            str(self.data_dir),
            "--socket",
            str(self.socket),
            *self.extra_args,
        ]

    def start(self, timeout: float = 20.0) -> Daemon:
        log = self.log_path.open("ab")
        # Its own session, so kill9() can take the parent and the namespaced child at once.
        self.proc = subprocess.Popen(
            self.argv(), stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runtimed exited {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists():
                try:
                    self.engine().Version(_engine_pb().VersionRequest(), timeout=2)
                    return self
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"runtimed did not come up in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        """Crash the daemon: SIGKILL to the parent and the child in the user namespace."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.stop()

    def remove_everything(self) -> None:
        """Remove every container and pod this daemon knows, so no process outlives the test."""
        from runtimed.gen.runtime.v1 import api_pb2 as cri

        pb = _engine_pb()
        engine, runtime = self.engine(), self.cri_runtime()
        for pod in runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=30).items:
            runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
        listed = engine.ListContainers(pb.ListContainersRequest(all=True), timeout=30)
        for container in listed.containers:
            engine.RemoveContainer(
                pb.RemoveContainerRequest(id=container.id, force=True), timeout=60
            )

    def holder_pid(self) -> int | None:
        try:
            return int((self.socket.parent / "ns-holder.pid").read_text())
        except (OSError, ValueError):
            return None

    def pod_infra_files(self) -> list[Path]:
        """The pid files of pod infra processes (runtimed_shim.podinfra) of this daemon."""
        return sorted((self.socket.parent / "sandboxes").glob("*/infra.json"))

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(grpc.RpcError):
                self.remove_everything()
        self.stop()
        # Pod infra processes outlive the daemon by design too (their pods' pid namespaces).
        for pid_file in self.pod_infra_files():
            podinfra.stop(str(pid_file))
        # The shim launcher outlives the daemon by design (it holds our namespaces).
        holder = self.holder_pid()
        if holder is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)
        remove_tree(self.root)
        remove_tree(self.data_dir)

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"unix:{self.socket}")
        return self._channel

    def engine(self) -> engine_pb2_grpc.EngineStub:
        return engine_pb2_grpc.EngineStub(self.channel())

    def cri_images(self) -> api_pb2_grpc.ImageServiceStub:
        return api_pb2_grpc.ImageServiceStub(self.channel())

    def cri_runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        return api_pb2_grpc.RuntimeServiceStub(self.channel())

    def ctl(self, *args: str, input: bytes | str | None = None, timeout: float = 120) -> CliResult:
        """Run runtimectl against this daemon and capture what a user would see."""
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [str(BIN / "runtimectl"), "-H", f"unix://{self.socket}", *args],
            input=data,
            capture_output=True,
            timeout=timeout,
            env=self.env,
        )
        return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def import_busybox(self, tag: str) -> str:
        """Import busybox (every applet a hard link) built from busybox-static; returns tag."""
        tarball = self.root / f"busybox-{tag.replace(':', '-').replace('/', '-')}.tar"
        script = Path(__file__).resolve().parents[2] / "deploy" / "make-busybox-rootfs.sh"
        subprocess.run([str(script), str(tarball)], check=True)
        self.ok("import", "-c", 'CMD ["/bin/sh"]', str(tarball), tag)
        return tag

    def ok(self, *args: str, **kwargs: object) -> CliResult:
        result = self.ctl(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, (
            f"runtimectl {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
        return result

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _engine_pb():  # noqa: ANN202 - the generated module
    from runtimed.gen.runtimed.v1 import engine_pb2

    return engine_pb2
