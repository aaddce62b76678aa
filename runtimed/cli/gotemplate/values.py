"""How Python data stands in for Go values: maps, structs, missing values, their type names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class _Missing:
    """Go's invalid reflect.Value: a map key that is not there (prints `<no value>`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class GoMap(dict):  # type: ignore[type-arg]
    """A dict that is a Go map in docker's types (Labels, Networks, Options, ...).

    A missing key reads as `<no value>` even when the template runs with
    missingkey=error (docker's typed pass never fails on a map key), and `index`
    of a missing key gives the map's zero value (`""` for map[string]string).
    """

    __slots__ = ("zero",)

    def __init__(self, items: Mapping[str, Any], zero: Any = None) -> None:
        super().__init__(items)
        self.zero = zero


class Struct:
    """A Go struct: fields by name, in order; a missing field is an error, not `<no value>`.

    A callable field is a method: `{{.Label "com.example"}}` calls it with its arguments.
    """

    __slots__ = ("fields", "type_name")

    def __init__(self, type_name: str, fields: Mapping[str, Any]) -> None:
        self.type_name = type_name
        self.fields = dict(fields)

    def data(self) -> dict[str, Any]:
        """The fields that are data (what `json` marshals), methods left out."""
        return {k: v for k, v in self.fields.items() if not callable(v)}


def type_name(value: Any) -> str:
    """Go's name for the type a value would have (for error messages and %T)."""
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, GoMap) and value.zero == "":
        return "map[string]string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value):
            return "[]string"
        return "[]interface {}"
    if isinstance(value, Struct):
        return value.type_name
    if callable(value):
        return "func"
    return type(value).__name__


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil, and empty strings, lists and maps are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, Mapping)):
        return bool(value)
    return True
