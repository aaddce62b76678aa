"""Variable substitution in Dockerfile words, with Docker's quoting rules.

Docker expands `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
`${VAR+word}`, `${VAR:?msg}` and `${VAR?msg}` in the instructions that take
words (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR,
ARG, ONBUILD's are expanded when they run); RUN, CMD and ENTRYPOINT are left
to the shell. Single quotes keep everything literal, double quotes keep
spaces but expand, the escape character (`\\` or the `escape` directive's)
escapes the next character and is removed. `expand_words` also splits on
unquoted blanks, including blanks that an unquoted expansion brings in.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtimed.errors import InvalidArgument

Lookup = Mapping[str, str]

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME = _NAME_START | frozenset("0123456789")
_BLANKS = " \t\r\n"


class _Lexer:
    def __init__(self, text: str, env: Lookup, escape: str, *, split: bool) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.split = split
        self.words: list[str] = []
        self.word: list[str] = []
        self.in_word = False  # a word has begun (even an empty one, as in "")

    # -- reading -------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    # -- words ---------------------------------------------------------------

    def emit(self, text: str) -> None:
        self.word.append(text)
        self.in_word = True

    def end_word(self) -> None:
        if self.in_word:
            self.words.append("".join(self.word))
        self.word = []
        self.in_word = False

    def emit_unquoted_expansion(self, value: str) -> None:
        if not self.split:
            self.emit(value)
            return
        # Blanks inside an unquoted expansion separate words, as in a shell.
        pieces = value.split()
        if not pieces:
            return
        if value[0] in _BLANKS:
            self.end_word()
        for i, piece in enumerate(pieces):
            if i:
                self.end_word()
            self.emit(piece)
        if value[-1] in _BLANKS:
            self.end_word()

    def run(self) -> list[str]:
        while self.pos < len(self.text):
            ch = self.next()
            if self.split and ch in _BLANKS:
                self.end_word()
            elif ch == "'":
                self.single_quoted()
            elif ch == '"':
                self.double_quoted()
            elif ch == "$":
                self.emit_unquoted_expansion(self.dollar())
            elif ch == self.escape:
                if self.pos >= len(self.text):
                    self.emit(ch)  # a trailing escape stays, as Docker keeps it
                else:
                    self.emit(self.next())
            else:
                self.emit(ch)
        self.end_word()
        return self.words

    def single_quoted(self) -> None:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise InvalidArgument(
                f"unexpected end of statement while looking for matching ' in {self.text!r}"
            )
        self.emit(self.text[self.pos : end])
        self.pos = end + 1

    def double_quoted(self) -> None:
        self.in_word = True
        while True:
            if self.pos >= len(self.text):
                raise InvalidArgument(
                    f'unexpected end of statement while looking for matching " in {self.text!r}'
                )
            ch = self.next()
            if ch == '"':
                return
            if ch == "$":
                self.emit(self.dollar())
            elif ch == self.escape and self.peek() in ('"', "$", self.escape):
                self.emit(self.next())
            else:
                self.emit(ch)

    # -- expansions ----------------------------------------------------------

    def name(self) -> str:
        start = self.pos
        if self.peek() and self.peek().isdigit():
            self.pos += 1  # $1: one positional digit, always empty here
            return self.text[start : self.pos]
        while self.peek() and self.peek() in _NAME:
            self.pos += 1
        return self.text[start : self.pos]

    def dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            return self.braced()
        if ch and (ch in _NAME_START or ch.isdigit()):
            return self.env.get(self.name(), "")
        return "$"

    def braced(self) -> str:
        name = self.name()
        if not name:
            raise InvalidArgument(f"bad substitution in {self.text!r}: missing name after ${{")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise InvalidArgument(
                f"unsupported modifier ({ch or 'end'}) in substitution {self.text!r}"
            )
        word = self.modifier_word()
        value = self.env.get(name)
        is_set = value is not None and (not colon or value != "")
        if ch == "-":
            return value if is_set else word  # type: ignore[return-value]
        if ch == "+":
            return word if is_set else ""
        if not is_set:
            raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
        return value  # type: ignore[return-value]

    def modifier_word(self) -> str:
        """The word of ${NAME:-word}: expanded, up to the matching brace."""
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise InvalidArgument(f"missing '}}' in substitution {self.text!r}")
            ch = self.next()
            if ch == "}":
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == "'":
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise InvalidArgument(f"unexpected end of statement in {self.text!r}")
                out.append(self.text[self.pos : end])
                self.pos = end + 1
            elif ch == '"':
                continue  # quotes inside the word group, as in a shell
            elif ch == self.escape and self.pos < len(self.text):
                out.append(self.next())
            else:
                out.append(ch)


def expand_word(text: str, env: Lookup, escape: str = "\\") -> str:
    """One word, quotes removed and variables expanded (blanks kept)."""
    return "".join(_Lexer(text, env, escape, split=False).run())


def expand_words(text: str, env: Lookup, escape: str = "\\") -> list[str]:
    """Words split on unquoted blanks, quotes removed and variables expanded."""
    return _Lexer(text, env, escape, split=True).run()


def split_quoted(text: str, escape: str = "\\") -> list[str]:
    """Split on unquoted blanks, keeping quotes and escapes (ENV/LABEL's KEY=VALUE words)."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            word.append(ch)
            if ch == escape and quote == '"' and i + 1 < len(text):
                word.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in _BLANKS:
            if word:
                words.append("".join(word))
                word = []
        elif ch == escape and i + 1 < len(text):
            word.extend((ch, text[i + 1]))
            i += 1
        else:
            if ch in ("'", '"'):
                quote = ch
            word.append(ch)
        i += 1
    if quote:
        raise InvalidArgument(f"unexpected end of statement while looking for matching {quote}")
    if word:
        words.append("".join(word))
    return words
