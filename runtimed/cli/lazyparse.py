"""An argparse parser whose subcommand parsers are built only when chosen.

runtimectl has about a hundred subcommands; building every one of their parsers
costs more start-up time than the RPC a command then makes. Here `add_parser`
hands back a recording: every call made on it (add_argument, set_defaults,
add_subparsers, ...) is kept and replayed onto a real parser only when the
command line picks that subcommand. Help and "invalid choice" errors need only
the names and help texts, which argparse keeps apart from the parsers. An
unknown flag is reported by the chosen command's parser, not the top-level one.
"""

from __future__ import annotations

import argparse
from typing import Any


class Recording:
    """Stands in for a parser (or a group, or a subparsers action) not yet needed."""

    def __init__(self, factory: Any = None, kwargs: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_factory", factory)
        object.__setattr__(self, "_kwargs", kwargs or {})
        object.__setattr__(self, "_calls", [])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> Recording:
            result = Recording()
            self._calls.append((name, args, kwargs, result))
            return result

        return record

    def __setattr__(self, name: str, value: Any) -> None:
        # No register() sets a parser attribute today; one that does must not be lost.
        self._calls.append(("__setattr__", (name, value), {}, None))

    def replay(self, target: Any) -> Any:
        """Make every recorded call on `target`, and on what those calls returned."""
        for name, args, kwargs, result in self._calls:
            if name == "__setattr__":
                setattr(target, *args)
                continue
            made = getattr(target, name)(*args, **kwargs)
            if result is not None:
                result.replay(made)
        return target

    def build(self) -> argparse.ArgumentParser:
        return self.replay(self._factory(**self._kwargs))


class LazySubParsersAction(argparse._SubParsersAction):
    def __init__(self, *args: Any, parser_class: type, **kwargs: Any) -> None:
        def record(**parser_kwargs: Any) -> Recording:
            return Recording(parser_class, parser_kwargs)

        super().__init__(*args, parser_class=record, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        chosen = self._name_parser_map.get(values[0])
        if isinstance(chosen, Recording):
            built = chosen.build()
            for name, value in list(self._name_parser_map.items()):
                if value is chosen:  # the name and its aliases
                    self._name_parser_map[name] = built
        super().__call__(parser, namespace, values, option_string)
        # A flag the chosen command does not know is reported by that command's parser
        # (`runtimectl run: error: unrecognized arguments: --x`, docker names the command
        # too); argparse would pass it up for the top-level parser to report.
        extras = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, None)
        if extras:
            self._name_parser_map[values[0]].error(f"unrecognized arguments: {' '.join(extras)}")


class LazyArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", LazySubParsersAction)
