"""The CRI streaming server: exec, attach and port-forward for kubelet and crictl over
SPDY/3.1 and WebSocket (server.StreamServer). Import the modules you need; this package
file stays empty so that config can read `address` without loading the server."""
