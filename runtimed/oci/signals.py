"""Signal names as users write them: "SIGTERM", "term", "15", "SIGRTMIN+3"."""

from __future__ import annotations

import signal

from runtimed.errors import InvalidArgument

# glibc reserves the first two real-time signals, so SIGRTMIN is 34 as Docker has it.
_RTMIN = int(signal.SIGRTMIN)
_RTMAX = int(signal.SIGRTMAX)


def _names() -> dict[str, int]:
    # Signals.__members__ includes aliases such as SIGIOT and SIGCLD.
    out = {
        name[3:]: int(sig)
        for name, sig in signal.Signals.__members__.items()
        if name.startswith("SIG") and not name.startswith("SIG_")
    }
    out.pop("RTMIN", None)
    out.pop("RTMAX", None)
    return out


_BY_NAME = _names()


def parse_signal(name_or_num: str) -> int:
    """The signal number for a name (with or without SIG, any case) or a number."""
    text = name_or_num.strip()
    if text.isdigit():
        num = int(text)
        if 1 <= num <= _RTMAX:
            return num
        raise InvalidArgument(f"invalid signal: {name_or_num!r} (valid numbers are 1 to {_RTMAX})")
    name = text.upper().removeprefix("SIG")
    if name in _BY_NAME:
        return _BY_NAME[name]
    for base, value, sign in (("RTMIN", _RTMIN, 1), ("RTMAX", _RTMAX, -1)):
        if not name.startswith(base):
            continue
        rest = name[len(base) :]
        if not rest:
            return value
        op, offset = rest[0], rest[1:]
        if op == ("+" if sign > 0 else "-") and offset.isdigit():
            num = value + sign * int(offset)
            if _RTMIN <= num <= _RTMAX:
                return num
    raise InvalidArgument(
        f"invalid signal: {name_or_num!r} (use a name like SIGTERM or KILL, or a number)"
    )
