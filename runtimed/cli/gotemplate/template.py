"""The entry point: `Template(text)` parses (ParseError), `.execute(data)` runs (ExecError)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtimed.cli.gotemplate.execute import State
from runtimed.cli.gotemplate.funcs import BUILTINS, DOCKER, Func
from runtimed.cli.gotemplate.parser import parse


class Template:
    """A template with Go's builtins and, unless told otherwise, docker's functions."""

    def __init__(self, text: str, name: str = "", funcs: Mapping[str, Func] = DOCKER) -> None:
        self.name = name
        self.text = text
        self.funcs = {**BUILTINS, **funcs}
        self.trees = parse(name, text, self.funcs)

    def execute(
        self, data: Any, *, missingkey: str = "default", funcs: Mapping[str, Func] | None = None
    ) -> str:
        """The text for `data`. missingkey="error" makes a missing map key an error, as
        docker's inspect runs its templates; `funcs` replaces functions of the same name."""
        table = self.funcs if funcs is None else {**self.funcs, **funcs}
        return State(self.name, self.text, self.trees, table, missingkey).run(data)
