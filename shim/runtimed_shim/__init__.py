"""The per-container shim of runtimed.

One small process per container: it runs the OCI runtime (crun), owns the
container's stdio, writes its logs, reaps its exit into an exit file and
serves a control/attach socket. It is started through a long-lived launcher
(`python -I -m runtimed_shim.launcher`) that forks it from a warm interpreter,
so shims share the interpreter's pages. Standard library only: this package
must stay importable without runtimed or grpc.
"""
