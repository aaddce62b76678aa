"""Template text into items, as Go's text/template/parse lexer cuts it.

Text runs between `{{` and `}}`; inside an action come operands, keywords and
punctuation. `{{- ` and ` -}}` trim the white space of the text next to them and
`{{/* */}}` is a comment. A lexing error becomes an ERROR item where it happens, so
the parser reports it in order with its own errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtimed.cli.gotemplate.gofmt import go_quote

LEFT, RIGHT = "{{", "}}"
SPACE_CHARS = " \t\r\n"

# Item types. The keywords print as <word> in error messages, the others quoted.
ERROR, EOF, TEXT, COMMENT = "error", "EOF", "text", "comment"
LEFT_DELIM, RIGHT_DELIM, LEFT_PAREN, RIGHT_PAREN = "{{", "}}", "(", ")"
BOOL, CHAR, CHAR_CONSTANT, NUMBER = "bool", "char", "charconst", "number"
STRING, RAW_STRING, FIELD, IDENTIFIER, VARIABLE = "string", "raw", "field", "ident", "var"
SPACE, PIPE, ASSIGN, DECLARE = "space", "|", "=", ":="
KEYWORDS = frozenset(
    ["block", "break", "continue", "define", "else", "end", "if", "range", "nil"]
    + ["template", "with"]
)
DOT = "."  # also a keyword

StateFn = Callable[[], Any]  # a lexer state: returns the next state, None at the end


class Item:
    __slots__ = ("line", "pos", "typ", "val")

    def __init__(self, typ: str, pos: int, val: str, line: int) -> None:
        self.typ, self.pos, self.val, self.line = typ, pos, val, line

    def __str__(self) -> str:
        """How Go's parser names an item in `unexpected X in Y`."""
        if self.typ == EOF:
            return "EOF"
        if self.typ == ERROR:
            return self.val
        if self.typ in KEYWORDS or self.typ == DOT:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _go_quote_prefix(self.val, 10) + "..."
        return _go_quote_prefix(self.val, len(self.val))

    def __repr__(self) -> str:
        return f"Item({self.typ}, {self.val!r})"


def _go_quote_prefix(text: str, n: int) -> str:
    return go_quote(text[:n])


def _alnum(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


def _has_left_trim(s: str, i: int) -> bool:
    return s[i : i + 1] == "-" and s[i + 1 : i + 2] in tuple(SPACE_CHARS)


def _has_right_trim(s: str, i: int) -> bool:
    return s[i : i + 1] in tuple(SPACE_CHARS) and s[i + 1 : i + 2] == "-"


class Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.start = 0
        self.paren_depth = 0
        self.items: list[Item] = []

    # --- helpers ---------------------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def next(self) -> str:
        ch = self.text[self.pos : self.pos + 1]
        self.pos += len(ch)
        return ch

    def backup(self) -> None:
        self.pos -= 1

    def line_at(self, pos: int) -> int:
        return 1 + self.text.count("\n", 0, pos)

    def emit(self, typ: str) -> None:
        val = self.text[self.start : self.pos]
        self.items.append(Item(typ, self.start, val, self.line_at(self.start)))
        self.ignore()

    def ignore(self) -> None:
        self.start = self.pos

    def accept(self, valid: str) -> bool:
        if self.peek() and self.peek() in valid:
            self.next()
            return True
        return False

    def accept_run(self, valid: str) -> None:
        while self.peek() and self.peek() in valid:
            self.next()

    def error(self, message: str) -> None:
        """An error item ends the items (the state machine stops on the None)."""
        self.items.append(Item(ERROR, self.start, message, self.line_at(self.start)))

    def at_right_delim(self) -> tuple[bool, bool]:
        if _has_right_trim(self.text, self.pos) and self.text.startswith(RIGHT, self.pos + 2):
            return True, True
        return self.text.startswith(RIGHT, self.pos), False

    def at_terminator(self) -> bool:
        ch = self.peek()
        if ch == "" or ch in SPACE_CHARS or ch in ".,|:()":
            return True
        return self.text.startswith(RIGHT, self.pos)

    # --- states (each returns False once lexing is over) -----------------------------------

    def run(self) -> list[Item]:
        state = self.lex_text
        while state is not None:
            state = state()
        return self.items

    def lex_text(self) -> StateFn | None:
        i = self.text.find(LEFT, self.pos)
        if i < 0:
            self.pos = len(self.text)
            if self.pos > self.start:
                self.emit(TEXT)
            self.items.append(Item(EOF, self.pos, "", self.line_at(self.pos)))
            return None
        trim = _has_left_trim(self.text, i + len(LEFT))
        end = i
        if trim:
            end = max(self.start, len(self.text[:i].rstrip(SPACE_CHARS)))
        self.pos = end
        if end > self.start:
            self.emit(TEXT)
        self.pos = i
        self.ignore()
        return self.lex_left_delim

    def lex_left_delim(self) -> StateFn | None:
        self.pos += len(LEFT)
        trim = _has_left_trim(self.text, self.pos)
        after = 2 if trim else 0
        if self.text.startswith("/*", self.pos + after):
            self.pos += after
            self.ignore()
            return self.lex_comment
        self.emit(LEFT_DELIM)
        self.pos += after
        self.ignore()
        self.paren_depth = 0
        return self.lex_inside_action

    def lex_comment(self) -> StateFn | None:
        i = self.text.find("*/", self.pos + 2)
        if i < 0:
            return self.error("unclosed comment")
        self.pos = i + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.error("comment ends before closing delimiter")
        self.emit(COMMENT)
        if trim:
            self.pos += 2
        self.pos += len(RIGHT)
        if trim:
            self._skip_space()
        self.ignore()
        return self.lex_text

    def _skip_space(self) -> None:
        while self.peek() and self.peek() in SPACE_CHARS:
            self.next()

    def lex_right_delim(self, trim: bool) -> StateFn | None:
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += len(RIGHT)
        self.emit(RIGHT_DELIM)
        if trim:
            self._skip_space()
            self.ignore()
        return self.lex_text

    def lex_inside_action(self) -> StateFn | None:
        delim, trim = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim(trim)
            return self.error("unclosed left paren")
        ch = self.next()
        if ch == "":
            return self.error("unclosed action")
        if ch in SPACE_CHARS:
            self.backup()
            return self.lex_space
        if ch == "=":
            self.emit(ASSIGN)
        elif ch == ":":
            if self.next() != "=":
                return self.error("expected :=")
            self.emit(DECLARE)
        elif ch == "|":
            self.emit(PIPE)
        elif ch == '"':
            return self.lex_quote
        elif ch == "`":
            return self.lex_raw_quote
        elif ch == "$":
            return lambda: self.lex_field_or_variable(VARIABLE)
        elif ch == "'":
            return self.lex_char
        elif ch == "." and self.peek() and not ("0" <= self.peek() <= "9"):
            return lambda: self.lex_field_or_variable(FIELD)
        elif ch in "+-." or "0" <= ch <= "9":
            self.backup()
            return self.lex_number
        elif _alnum(ch):
            self.backup()
            return self.lex_identifier
        elif ch == "(":
            self.emit(LEFT_PAREN)
            self.paren_depth += 1
        elif ch == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.error("unexpected right paren")
            self.emit(RIGHT_PAREN)
        elif ord(ch) < 0x80 and ch.isprintable():
            self.emit(CHAR)
        else:
            return self.error(f"unrecognized character in action: {_unicode_name(ch)}")
        return self.lex_inside_action

    def lex_space(self) -> StateFn | None:
        spaces = 0
        while self.peek() and self.peek() in SPACE_CHARS:
            self.next()
            spaces += 1
        # A space may belong to a trim-marked ` -}}`.
        if _has_right_trim(self.text, self.pos - 1) and self.text.startswith(RIGHT, self.pos + 1):
            self.backup()
            if spaces == 1:
                return self.lex_inside_action
        self.emit(SPACE)
        return self.lex_inside_action

    def lex_identifier(self) -> StateFn | None:
        while _alnum(self.peek()):
            self.next()
        if not self.at_terminator():
            return self.error(f"bad character {_unicode_name(self.peek())}")
        word = self.text[self.start : self.pos]
        if word in KEYWORDS:
            self.emit(word)
        elif word in ("true", "false"):
            self.emit(BOOL)
        else:
            self.emit(IDENTIFIER)
        return self.lex_inside_action

    def lex_field_or_variable(self, typ: str) -> StateFn | None:
        if self.at_terminator():
            self.emit(VARIABLE if typ == VARIABLE else DOT)
            return self.lex_inside_action
        while _alnum(self.peek()):
            self.next()
        if not self.at_terminator():
            return self.error(f"bad character {_unicode_name(self.peek())}")
        self.emit(typ)
        return self.lex_inside_action

    def lex_char(self) -> StateFn | None:
        while True:
            ch = self.next()
            if ch == "\\":
                if self.next() not in ("", "\n"):
                    continue
                return self.error("unterminated character constant")
            if ch in ("", "\n"):
                return self.error("unterminated character constant")
            if ch == "'":
                break
        self.emit(CHAR_CONSTANT)
        return self.lex_inside_action

    def lex_number(self) -> StateFn | None:
        if not self._scan_number():
            number = self.text[self.start : self.pos]
            return self.error(f'bad number syntax: "{number}"')
        self.emit(NUMBER)
        return self.lex_inside_action

    def _scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if _alnum(self.peek()):
            self.next()
            return False
        return True

    def lex_quote(self) -> StateFn | None:
        while True:
            ch = self.next()
            if ch == "\\":
                if self.next() not in ("", "\n"):
                    continue
                return self.error("unterminated quoted string")
            if ch in ("", "\n"):
                return self.error("unterminated quoted string")
            if ch == '"':
                break
        self.emit(STRING)
        return self.lex_inside_action

    def lex_raw_quote(self) -> StateFn | None:
        while True:
            ch = self.next()
            if ch == "":
                return self.error("unterminated raw quoted string")
            if ch == "`":
                break
        self.emit(RAW_STRING)
        return self.lex_inside_action


def _unicode_name(ch: str) -> str:
    """Go's %#U: U+0041 'A'."""
    if not ch:
        return "U+FFFFFFFFFFFFFFFF"  # Go's eof rune (-1) printed as %#U
    return f"U+{ord(ch):04X} '{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"


def lex(text: str) -> list[Item]:
    return Lexer(text).run()
