"""runtimectl, the docker-style client."""

from runtimed.cli.lazyproto import defer_python_message

defer_python_message()
