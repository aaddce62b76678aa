"""The functions a template may call: Go's builtins and docker's additions.

Each is a `Func`: the Python callable, the kinds of its fixed parameters (checked as
Go checks argument types) and, for variadic ones, the kind of the rest. `and` and
`or` are evaluated lazily by the executor; they are here for their arity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtimed.cli.gotemplate.gofmt import format_value, sprint, sprintf, sprintln
from runtimed.cli.gotemplate.values import MISSING, GoMap, Struct, truth, type_name

ANY, STR, INT, STRS = "interface {}", "string", "int", "[]string"


class FuncError(Exception):
    """A function's own failure: Go reports it as `error calling NAME: MESSAGE`."""


class Func:
    __slots__ = ("fn", "params", "variadic")

    def __init__(self, fn: Any, params: tuple[str, ...], variadic: str | None = None) -> None:
        self.fn = fn
        self.params = params
        self.variadic = variadic


# --- comparisons ----------------------------------------------------------------------------


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return None


def _nil(value: Any) -> bool:
    return value is None or value is MISSING


def eq(arg1: Any, *others: Any) -> bool:
    if not others:
        raise FuncError("missing argument for comparison")
    k1 = _kind(arg1)
    for arg in others:
        k2 = _kind(arg)
        if k1 != k2:
            if not _nil(arg1) and not _nil(arg):
                raise FuncError("incompatible types for comparison")
            continue
        if k1 is not None:
            if arg1 == arg:
                return True
            continue
        if _nil(arg1) or _nil(arg):
            if _nil(arg1) == _nil(arg):
                return True
            continue
        for value in (arg1, arg):
            if isinstance(value, (Mapping, list, tuple)):
                raise FuncError(f"non-comparable type {format_value(value)}: {type_name(value)}")
        if arg1 is arg or arg1 == arg:
            return True
    return False


def ne(arg1: Any, arg2: Any) -> bool:
    return not eq(arg1, arg2)


def lt(arg1: Any, arg2: Any) -> bool:
    k1, k2 = _kind(arg1), _kind(arg2)
    if k1 is None or k2 is None or "bool" in (k1, k2):
        if k1 is not None and k2 is not None and k1 != k2:
            raise FuncError("incompatible types for comparison")
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError("incompatible types for comparison")
    if k1 == "string":
        return bool(arg1.encode() < arg2.encode())  # Go compares strings bytewise
    return bool(arg1 < arg2)


def le(arg1: Any, arg2: Any) -> bool:
    return lt(arg1, arg2) or eq(arg1, arg2)


def gt(arg1: Any, arg2: Any) -> bool:
    return not le(arg1, arg2)


def ge(arg1: Any, arg2: Any) -> bool:
    return not lt(arg1, arg2)


# --- collections ----------------------------------------------------------------------------


def length(item: Any) -> int:
    if _nil(item):
        raise FuncError("len of nil pointer")
    if isinstance(item, str):
        return len(item.encode())  # Go's len counts bytes
    if isinstance(item, (list, tuple, Mapping)):
        return len(item)
    raise FuncError(f"len of type {type_name(item)}")


def _int_index(index: Any, what: str) -> int:
    if _nil(index):
        raise FuncError(f"cannot index {what} with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise FuncError(f"cannot index {what} with type {type_name(index)}")
    return index


def index(item: Any, *indexes: Any) -> Any:
    if _nil(item):
        raise FuncError("index of untyped nil")
    for idx in indexes:
        if _nil(item):
            raise FuncError("index of nil pointer")
        if isinstance(item, (str, list, tuple)):
            seq: Any = item.encode() if isinstance(item, str) else item
            x = _int_index(idx, "slice/array")
            if x < 0 or x >= len(seq):
                raise FuncError(f"index out of range: {x}")
            item = seq[x]
        elif isinstance(item, Mapping):
            if not isinstance(idx, str):
                raise FuncError(f"value has type {type_name(idx)}; should be string")
            item = item[idx] if idx in item else (item.zero if isinstance(item, GoMap) else None)
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def slice_(item: Any, *indexes: Any) -> Any:
    if _nil(item):
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        seq: Any = item.encode()
    elif isinstance(item, (list, tuple)):
        seq = list(item)
    else:
        raise FuncError(f"can't slice item of type {type_name(item)}")
    bounds = [0, len(seq)]
    for i, idx in enumerate(indexes[:2]):
        x = _int_index(idx, "slice/array")
        if x < 0 or x > len(seq):
            raise FuncError(f"index out of range: {x}")
        bounds[i] = x
    if bounds[0] > bounds[1]:
        raise FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    out = seq[bounds[0] : bounds[1]]
    return out.decode(errors="replace") if isinstance(out, bytes) else out


def call(fn: Any, *args: Any) -> Any:
    if _nil(fn):
        raise FuncError("call of nil")
    if not callable(fn):
        raise FuncError(f"non-function of type {type_name(fn)}")
    return fn(*args)


# --- printing and escaping ------------------------------------------------------------------


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(args)


_HTML = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}


def html(*args: Any) -> str:
    return "".join(_HTML.get(ch, ch) for ch in _eval_args(args))


_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E"}
_JS |= {"&": "\\u0026", "=": "\\u003D"}


def js(*args: Any) -> str:
    out = []
    for ch in _eval_args(args):
        if ch in _JS:
            out.append(_JS[ch])
        elif ord(ch) < 0x20 or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


_URL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~")


def urlquery(*args: Any) -> str:
    out = []
    for byte in _eval_args(args).encode():
        ch = chr(byte)
        out.append(ch if ch in _URL_SAFE else "+" if ch == " " else f"%{byte:02X}")
    return "".join(out)


# --- docker's functions ---------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Go's json.Marshal order: maps by key, structs by field order."""
    if value is MISSING:
        return None
    if isinstance(value, Struct):
        return {k: _jsonable(v) for k, v in sorted(value.data().items())}
    if isinstance(value, GoMap):
        return {k: _jsonable(value[k]) for k in sorted(value)}
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def to_json(value: Any) -> str:
    import json

    return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"))


def split(text: str, sep: str) -> list[str]:
    return list(text) if sep == "" else text.split(sep)


def title(text: str) -> str:
    """Go's strings.Title: the first letter of every word upper-cased, the rest kept."""
    out, prev = [], " "
    for ch in text:
        separator = not (prev.isalnum() or prev == "_") if prev.isascii() else prev.isspace()
        out.append(ch.upper() if separator else ch)
        prev = ch
    return "".join(out)


def pad(text: str, prefix: int, suffix: int) -> str:
    return text and " " * prefix + text + " " * suffix


def truncate(text: str, size: int) -> str:
    data = text.encode()
    return text if len(data) < size else data[: max(size, 0)].decode(errors="replace")


BUILTINS: dict[str, Func] = {
    "and": Func(None, (ANY,), ANY),
    "or": Func(None, (ANY,), ANY),
    "not": Func(lambda v: not truth(v), (ANY,)),
    "call": Func(call, (ANY,), ANY),
    "html": Func(html, (), ANY),
    "js": Func(js, (), ANY),
    "urlquery": Func(urlquery, (), ANY),
    "index": Func(index, (ANY,), ANY),
    "slice": Func(slice_, (ANY,), ANY),
    "len": Func(length, (ANY,)),
    "print": Func(lambda *a: sprint(a), (), ANY),
    "printf": Func(lambda f, *a: sprintf(f, a), (STR,), ANY),
    "println": Func(lambda *a: sprintln(a), (), ANY),
    "eq": Func(eq, (ANY,), ANY),
    "ne": Func(ne, (ANY, ANY)),
    "lt": Func(lt, (ANY, ANY)),
    "le": Func(le, (ANY, ANY)),
    "gt": Func(gt, (ANY, ANY)),
    "ge": Func(ge, (ANY, ANY)),
}

DOCKER: dict[str, Func] = {
    "json": Func(to_json, (ANY,)),
    "split": Func(split, (STR, STR)),
    "join": Func(lambda elems, sep: sep.join(elems), (STRS, STR)),
    "title": Func(title, (STR,)),
    "lower": Func(str.lower, (STR,)),
    "upper": Func(str.upper, (STR,)),
    "pad": Func(pad, (STR, INT, INT)),
    "truncate": Func(truncate, (STR, INT)),
}


def _keep(value: str, *_: Any) -> str:
    return value


# A table's header row runs the same template over the column names with these in
# place of docker's functions, so that `{{upper .Name}}` still heads its column NAME.
HEADER: dict[str, Func] = DOCKER | {
    "json": Func(_keep, (STR,)),
    "split": Func(_keep, (STR, STR)),
    "join": Func(_keep, (STR, STR)),
    "title": Func(_keep, (STR,)),
    "lower": Func(_keep, (STR,)),
    "upper": Func(_keep, (STR,)),
    "truncate": Func(_keep, (STR, INT)),
}
