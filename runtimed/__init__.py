"""runtimed: a rootless container runtime driven by gRPC."""

__version__ = "0.1.0"
