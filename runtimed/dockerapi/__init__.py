"""Docker's Engine REST API, served onto the same core services as the gRPC API.

`make_app(services)` builds it; `DockerApiServer` serves it on a unix socket
or any listening socket (see server.py).
"""

from runtimed.dockerapi.server import DockerApi, DockerApiServer, make_app

__all__ = ["DockerApi", "DockerApiServer", "make_app"]
