"""The two ways a template fails, worded as Go's text/template words them."""

from __future__ import annotations


class TemplateError(Exception):
    """A template that cannot be parsed or executed; `message` is Go's whole line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParseError(TemplateError):
    """`template: NAME:LINE: ...`: the text is not a template."""


class ExecError(TemplateError):
    """`template: NAME:LINE:COL: executing "NAME" at <NODE>: ...`: the data did not fit.

    `output` is what the template wrote before it failed (docker keeps it for headers).
    """

    output = ""
