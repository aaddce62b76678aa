"""Go's fmt for template values: `%v` printing, Sprint/Sprintln, Sprintf's verbs, strconv.Quote."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from runtimed.cli.gotemplate.values import MISSING, Struct, type_name

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES |= {"\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(text: str, *, ascii_only: bool = False) -> str:
    """Go's strconv.Quote (QuoteToASCII with ascii_only): what %q and docker ps's COMMAND show."""
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable() and (ord(ch) < 0x80 or not ascii_only):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_float(value: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), which %v uses: shortest digits, %e from 1e+06."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(abs(value))  # shortest digits that read back, like Go's
    mantissa, _, exp_text = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exp_text) if exp_text else 0)  # digits before the point
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    sign = "-" if math.copysign(1, value) < 0 else ""
    if not digits:
        return sign + "0"
    exp = point - 1
    if exp < -4 or exp >= 6:  # 'g' with the shortest precision switches at 6 digits
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def format_value(value: Any, *, top: bool = False) -> str:
    """Go's %v. A nil at the top of an action prints `<no value>`, inside a value `<nil>`."""
    if value is None or value is MISSING:
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, Mapping):
        pairs = (f"{format_value(k)}:{format_value(value[k])}" for k in _sorted(value))
        return "map[" + " ".join(pairs) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Struct):
        return "{" + " ".join(format_value(v) for v in value.data().values()) + "}"
    return str(value)


def _sorted(mapping: Mapping[Any, Any]) -> list[Any]:
    """fmt prints maps in key order (numbers by value, strings bytewise)."""
    try:
        return sorted(mapping)
    except TypeError:
        return sorted(mapping, key=str)


def sprint(args: Sequence[Any]) -> str:
    """fmt.Sprint: a space between operands when neither side is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg))
    return "".join(out)


def sprintln(args: Sequence[Any]) -> str:
    return " ".join(format_value(a) for a in args) + "\n"


# --- Sprintf ------------------------------------------------------------------------------

_FLAGS = "+-# 0"


class _Spec:
    __slots__ = ("flags", "prec", "verb", "width")

    def __init__(self, flags: str, width: int | None, prec: int | None, verb: str) -> None:
        self.flags, self.width, self.prec, self.verb = flags, width, prec, verb

    def pad(self, text: str, *, numeric: bool = False) -> str:
        if self.width is None or len(text) >= self.width:
            return text
        fill = self.width - len(text)
        if "-" in self.flags:
            return text + " " * fill
        if "0" in self.flags:
            if numeric and text[:1] in "+- ":
                return text[0] + "0" * fill + text[1:]
            return "0" * fill + text
        return " " * fill + text


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    """fmt.Sprintf with Go's verbs, flags, width and precision, and its %!x(...) complaints."""
    out: list[str] = []
    argi, i, n = 0, 0, len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        if i >= n:
            out.append("%!(NOVERB)")
            break
        flags = ""
        while i < n and fmt[i] in _FLAGS:
            flags += fmt[i]
            i += 1
        width, i, argi = _number(fmt, i, args, argi)
        prec = None
        if i < n and fmt[i] == ".":
            prec, i, argi = _number(fmt, i + 1, args, argi)
            prec = prec or 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if width is not None and width < 0:
            flags, width = flags + "-", -width
        spec = _Spec(flags, width, prec, verb)
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format_arg(args[argi], spec))
        argi += 1
    if argi < len(args):
        extra = ", ".join(f"{type_name(a)}={format_value(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _number(fmt: str, i: int, args: Sequence[Any], argi: int) -> tuple[int | None, int, int]:
    """A width or precision: digits, or `*` taking an int argument."""
    if i < len(fmt) and fmt[i] == "*":
        if argi < len(args) and isinstance(args[argi], int) and not isinstance(args[argi], bool):
            return args[argi], i + 1, argi + 1
        return None, i + 1, argi + 1
    start = i
    while i < len(fmt) and fmt[i].isdigit():
        i += 1
    return (int(fmt[start:i]) if i > start else None), i, argi


def _bad(value: Any, spec: _Spec) -> str:
    if value is None or value is MISSING:
        return f"%!{spec.verb}(<nil>)"
    return f"%!{spec.verb}({type_name(value)}={format_value(value)})"


def _format_arg(value: Any, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "T":
        return spec.pad(type_name(value))
    if verb == "v" and "#" in spec.flags:
        return spec.pad(go_quote(value) if isinstance(value, str) else format_value(value))
    if verb == "v" and "+" in spec.flags and isinstance(value, Struct):
        inner = " ".join(f"{k}:{format_value(v)}" for k, v in value.data().items())
        return spec.pad("{" + inner + "}")
    if isinstance(value, (list, tuple)):  # the verb, width and all, applies to each element
        return "[" + " ".join(_format_arg(v, spec) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = " ".join(
            f"{_format_arg(k, spec)}:{_format_arg(value[k], spec)}" for k in _sorted(value)
        )
        return "map[" + inner + "]"
    if value is None or value is MISSING:
        return spec.pad("<nil>") if verb == "v" else _bad(value, spec)
    if isinstance(value, bool):
        return spec.pad(format_value(value)) if verb in "vt" else _bad(value, spec)
    if isinstance(value, int):
        return _format_int(value, spec)
    if isinstance(value, float):
        return _format_float(value, spec)
    if isinstance(value, str):
        return _format_str(value, spec)
    return spec.pad(format_value(value)) if verb in "vs" else _bad(value, spec)


def _format_int(value: int, spec: _Spec) -> str:
    verb, flags = spec.verb, spec.flags
    if verb == "c":
        return spec.pad(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd")
    if verb == "q":
        quoted = go_quote(chr(value))[1:-1].replace("'", "\\'").replace('\\"', '"')
        return spec.pad("'" + quoted + "'")
    if verb == "U":
        return spec.pad(f"U+{value:04X}")
    bases = {"d": "d", "v": "d", "x": "x", "X": "X", "o": "o", "O": "o", "b": "b"}
    if verb not in bases:
        return _bad(value, spec)
    digits = format(abs(value), bases[verb])
    if spec.prec is not None:
        digits = digits.rjust(spec.prec, "0") if spec.prec else ("" if value == 0 else digits)
    prefix = ""
    if verb == "O" or ("#" in flags and verb == "o" and not digits.startswith("0")):
        prefix = "0o" if verb == "O" else "0"
    elif "#" in flags and verb in "xXb":
        prefix = "0" + ("b" if verb == "b" else verb)
    sign = "-" if value < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
    text = sign + prefix + digits
    if "0" in flags and "-" not in flags and spec.prec is None and spec.width:
        fill = spec.width - len(text)
        if fill > 0:
            text = sign + prefix + "0" * fill + digits
        return text
    return spec.pad(text)


def _format_float(value: float, spec: _Spec) -> str:
    verb, flags = spec.verb, spec.flags
    if verb not in "vfFeEgG":
        return _bad(value, spec)
    if math.isinf(value) or math.isnan(value):
        text = go_float(value)
        if "+" in flags and not text.startswith(("+", "-")):
            text = "+" + text
        return _Spec(flags.replace("0", ""), spec.width, None, verb).pad(text)
    if verb == "v" or (verb in "gG" and spec.prec is None):
        text = go_float(value)
        if verb == "G":
            text = text.upper()
    else:
        prec = 6 if spec.prec is None else spec.prec
        text = ("%." + str(prec) + ("f" if verb == "F" else verb)) % value
    if "+" in flags and not text.startswith("-"):
        text = "+" + text
    elif " " in flags and not text.startswith("-"):
        text = " " + text
    return spec.pad(text, numeric=True)


def _format_str(value: str, spec: _Spec) -> str:
    verb = spec.verb
    if verb in "sv":
        text = value if spec.prec is None else value[: spec.prec]
        return spec.pad(text)
    if verb == "q":
        if spec.prec is not None:
            value = value[: spec.prec]
        if "#" in spec.flags and "`" not in value and value.isprintable():
            return spec.pad("`" + value + "`")
        return spec.pad(go_quote(value, ascii_only="+" in spec.flags))
    if verb in "xX":
        data = value.encode()
        if spec.prec is not None:
            data = data[: spec.prec]
        sep = " " if " " in spec.flags else ""
        prefix = ("0" + verb) if "#" in spec.flags else ""
        hexed = sep.join(prefix + format(b, "02" + verb.lower()) for b in data)
        return spec.pad(hexed.upper() if verb == "X" else hexed)
    return _bad(value, spec)
