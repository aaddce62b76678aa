"""Docker's Engine REST API, served onto the same core services as the gRPC API.

`make_app(services)` builds it; `DockerApiServer` serves it on a unix socket
or any listening socket; `serve_socket(services, sock, ssl_context=...)` is the
hook daemon/remote.py calls for tcp:// listeners with mutual TLS (see server.py).
"""

from runtimed.dockerapi.server import DockerApi, DockerApiServer, make_app, serve_socket

__all__ = ["DockerApi", "DockerApiServer", "make_app", "serve_socket"]
