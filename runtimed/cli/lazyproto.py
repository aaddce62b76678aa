"""Keep protobuf's pure-Python message class out of runtimectl's start-up.

`google.protobuf.descriptor_pool` imports `internal.python_message` at module level,
and that pulls in text_format, decoder, containers, well_known_types and more: about
12 ms of every command. With the upb backend (what the wheel ships) the module is
used only by the pure-Python pool, never by runtimectl. Registering it as a lazy
module (stdlib importlib.util.LazyLoader) and as the attribute of its package, so
`from google.protobuf.internal import python_message` does not touch it, defers that
cost to the first real use, which with upb never comes.
"""

from __future__ import annotations

import importlib.util
import sys

_NAME = "google.protobuf.internal.python_message"


def defer_python_message() -> None:
    """Call before anything imports google.protobuf.descriptor_pool."""
    if _NAME in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(_NAME)
    except ImportError:
        return
    if spec is None or spec.loader is None:
        return
    import google.protobuf.internal as package

    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    loader.exec_module(module)  # lazy: runs the real module on first attribute access
    package.python_message = module  # type: ignore[attr-defined]
