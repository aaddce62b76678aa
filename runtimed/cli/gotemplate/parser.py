"""Items into a tree, with Go's text/template/parse rules and error messages."""

from __future__ import annotations

import re
from collections.abc import Container

from runtimed.cli.gotemplate import lexer as lx
from runtimed.cli.gotemplate import nodes as n
from runtimed.cli.gotemplate.errors import ParseError
from runtimed.cli.gotemplate.gofmt import go_quote
from runtimed.cli.gotemplate.lexer import Item

_OPERAND_START = frozenset(
    [lx.BOOL, lx.CHAR_CONSTANT, lx.DOT, lx.FIELD, lx.IDENTIFIER, lx.NUMBER, "nil",
     lx.RAW_STRING, lx.STRING, lx.VARIABLE, lx.LEFT_PAREN]
)  # fmt: skip


class Parser:
    """One parse of a template text; `trees` collects it and its {{define}}d templates."""

    def __init__(self, name: str, text: str, funcs: Container[str]) -> None:
        self.name = name
        self.funcs = funcs
        self.items = lx.lex(text)
        self.i = 0  # index of the next item
        self.seen = 0  # furthest item looked at: Go reports its line
        self.vars = ["$"]
        self.range_depth = 0
        self.action_line = 0
        self.trees: dict[str, n.ListNode] = {}

    # --- items -----------------------------------------------------------------------------

    def next(self) -> Item:
        item = self.items[min(self.i, len(self.items) - 1)]
        self.i += 1
        self.seen = max(self.seen, self.i - 1)
        return item

    def backup(self, count: int = 1) -> None:
        self.i -= count

    def peek(self) -> Item:
        item = self.next()
        self.backup()
        return item

    def next_non_space(self) -> Item:
        item = self.next()
        while item.typ == lx.SPACE:
            item = self.next()
        return item

    def peek_non_space(self) -> Item:
        item = self.next_non_space()
        self.backup()
        return item

    def errorf(self, message: str) -> ParseError:
        line = self.items[min(self.seen, len(self.items) - 1)].line
        return ParseError(f"template: {self.name}:{line}: {message}")

    def unexpected(self, item: Item, context: str) -> ParseError:
        if item.typ == lx.ERROR:
            extra = ""
            if self.action_line and self.action_line != item.line:
                extra = f" in {context}"
                if item.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            return self.errorf(f"{item}{extra}")
        return self.errorf(f"unexpected {item} in {context}")

    def expect(self, typ: str, context: str) -> Item:
        item = self.next_non_space()
        if item.typ != typ:
            raise self.unexpected(item, context)
        return item

    # --- structure -------------------------------------------------------------------------

    def parse(self) -> dict[str, n.ListNode]:
        root = n.ListNode(self.peek().pos)
        while self.peek().typ != lx.EOF:
            if self.peek().typ == lx.LEFT_DELIM:
                start = self.i
                self.next()
                if self.next_non_space().typ == "define":
                    self.parse_definition()
                    continue
                self.i = start
            node = self.text_or_action()
            if isinstance(node, (n.EndNode, n.ElseNode)):
                raise self.errorf(f"unexpected {node}")
            if node is not None:
                root.nodes.append(node)
        self.trees.setdefault(self.name, root)
        return self.trees

    def parse_definition(self) -> None:
        context = "define clause"
        item = self.next_non_space()
        if item.typ not in (lx.STRING, lx.RAW_STRING):
            raise self.unexpected(item, context)
        name = self.unquote(item.val)
        self.expect(lx.RIGHT_DELIM, context)
        saved, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved
        if not isinstance(end, n.EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        self.trees[name] = body

    def item_list(self) -> tuple[n.ListNode, n.Node]:
        body = n.ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != lx.EOF:
            node = self.text_or_action()
            if isinstance(node, (n.EndNode, n.ElseNode)):
                return body, node
            if node is not None:
                body.nodes.append(node)
        raise self.errorf("unexpected EOF")

    def text_or_action(self) -> n.Node | None:
        item = self.next_non_space()
        if item.typ == lx.TEXT:
            return n.TextNode(item.pos, item.val)
        if item.typ == lx.LEFT_DELIM:
            self.action_line = item.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if item.typ == lx.COMMENT:
            return None
        raise self.unexpected(item, "input")

    def action(self) -> n.Node:
        item = self.next_non_space()
        if item.typ == "block":
            return self.block_control()
        if item.typ in ("break", "continue"):
            return self.loop_control(item)
        if item.typ == "else":
            return self.else_control()
        if item.typ == "end":
            return n.EndNode(self.expect(lx.RIGHT_DELIM, "end").pos)
        if item.typ in ("if", "range", "with"):
            return self.branch(item.typ)
        if item.typ == "template":
            return self.template_control()
        self.backup()
        item = self.peek()
        # Variables declared here live until the {{end}} of the enclosing control.
        return n.ActionNode(item.pos, self.pipeline("command", lx.RIGHT_DELIM))

    def loop_control(self, item: Item) -> n.Node:
        token = self.next_non_space()
        if token.typ != lx.RIGHT_DELIM:
            raise self.unexpected(token, "{{" + item.val + "}}")
        if self.range_depth == 0:
            raise self.errorf("{{" + item.val + "}} outside {{range}}")
        return n.BreakNode(item.pos) if item.typ == "break" else n.ContinueNode(item.pos)

    def else_control(self) -> n.Node:
        item = self.peek_non_space()
        if item.typ in ("if", "with"):
            return n.ElseNode(item.pos)  # `else if` and `else with` chain: the keyword stays
        return n.ElseNode(self.expect(lx.RIGHT_DELIM, "else").pos)

    def branch(self, keyword: str) -> n.BranchNode:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(keyword, lx.RIGHT_DELIM)
            if keyword == "range":
                self.range_depth += 1
            body, nxt = self.item_list()
            if keyword == "range":
                self.range_depth -= 1
            else_list = None
            if isinstance(nxt, n.ElseNode):
                follow = self.peek().typ
                if keyword in ("if", "with") and follow == keyword:
                    # {{else if x}}..{{end}} is {{else}}{{if x}}..{{end}}{{end}}.
                    self.next()
                    else_list = n.ListNode(nxt.pos)
                    else_list.nodes.append(self.branch(keyword))
                else:
                    else_list, end = self.item_list()
                    if not isinstance(end, n.EndNode):
                        raise self.errorf(f"expected end; found {end}")
            return n.BranchNode(keyword, pipe.pos, pipe, body, else_list)
        finally:
            del self.vars[mark:]

    def template_name(self, item: Item, context: str) -> str:
        if item.typ in (lx.STRING, lx.RAW_STRING):
            return self.unquote(item.val)
        raise self.unexpected(item, context)

    def template_control(self) -> n.Node:
        context = "template clause"
        item = self.next_non_space()
        name = self.template_name(item, context)
        pipe = None
        if self.next_non_space().typ != lx.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, lx.RIGHT_DELIM)
        return n.TemplateNode(item.pos, name, pipe)

    def block_control(self) -> n.Node:
        context = "block clause"
        item = self.next_non_space()
        name = self.template_name(item, context)
        pipe = self.pipeline(context, lx.RIGHT_DELIM)
        saved, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved
        if not isinstance(end, n.EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        self.trees[name] = body
        return n.TemplateNode(item.pos, name, pipe)

    # --- pipelines -------------------------------------------------------------------------

    def pipeline(self, context: str, end: str) -> n.PipeNode:
        pipe = n.PipeNode(self.peek_non_space().pos)
        while self.peek_non_space().typ == lx.VARIABLE:
            start = self.i
            var = self.next_non_space()
            nxt = self.peek_non_space()
            if nxt.typ in (lx.ASSIGN, lx.DECLARE):
                pipe.is_assign = nxt.typ == lx.ASSIGN
                self.next_non_space()
                pipe.decl.append(n.VariableNode(var.pos, var.val))
                self.vars.append(var.val)
                break
            if nxt.typ == lx.CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(n.VariableNode(var.pos, var.val))
                self.vars.append(var.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (lx.VARIABLE, lx.RIGHT_DELIM, lx.RIGHT_PAREN):
                        continue  # the second variable of a range
                    raise self.errorf("range can only initialize variables")
                raise self.errorf(f"too many declarations in {context}")
            self.i = start
            break
        while True:
            item = self.next_non_space()
            if item.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if item.typ in _OPERAND_START:
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(item, context)

    def check_pipeline(self, pipe: n.PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.errorf(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if isinstance(cmd.args[0], (n.LiteralNode, n.DotNode, n.NilNode)):
                raise self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> n.CommandNode:
        cmd = n.CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            item = self.next()
            if item.typ == lx.SPACE:
                continue
            if item.typ in (lx.RIGHT_DELIM, lx.RIGHT_PAREN):
                self.backup()
            elif item.typ != lx.PIPE:
                raise self.unexpected(item, "operand")
            break
        if not cmd.args:
            raise self.errorf("empty command")
        return cmd

    def operand(self) -> n.Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == lx.FIELD:
            chain = n.ChainNode(self.peek().pos, node)
            while self.peek().typ == lx.FIELD:
                chain.fields.append(self.next().val[1:])
            if isinstance(node, n.FieldNode):
                return n.FieldNode(chain.pos, str(chain))
            if isinstance(node, n.VariableNode):
                return n.VariableNode(chain.pos, str(chain))
            if isinstance(node, (n.LiteralNode, n.NilNode, n.DotNode)):
                raise self.errorf(f"unexpected . after term {_quote(str(node))}")
            return chain
        return node

    def term(self) -> n.Node | None:
        item = self.next_non_space()
        typ = item.typ
        if typ == lx.IDENTIFIER:
            if item.val not in self.funcs:
                raise self.errorf(f"function {_quote(item.val)} not defined")
            return n.IdentifierNode(item.pos, item.val)
        if typ == lx.DOT:
            return n.DotNode(item.pos)
        if typ == "nil":
            return n.NilNode(item.pos)
        if typ == lx.VARIABLE:
            name = item.val.split(".")[0]
            if name not in self.vars:
                raise self.errorf(f"undefined variable {_quote(name)}")
            return n.VariableNode(item.pos, item.val)
        if typ == lx.FIELD:
            return n.FieldNode(item.pos, item.val)
        if typ == lx.BOOL:
            return n.LiteralNode(item.pos, item.val, item.val == "true")
        if typ in (lx.NUMBER, lx.CHAR_CONSTANT):
            return n.LiteralNode(item.pos, item.val, self.number(item))
        if typ == lx.LEFT_PAREN:
            return self.pipeline("parenthesized pipeline", lx.RIGHT_PAREN)
        if typ in (lx.STRING, lx.RAW_STRING):
            return n.LiteralNode(item.pos, item.val, self.unquote(item.val))
        self.backup()
        return None

    # --- literals --------------------------------------------------------------------------

    def number(self, item: Item) -> int | float:
        """An untyped constant as Go's exec sees it: float if written as one, else int."""
        text = item.val
        if item.typ == lx.CHAR_CONSTANT:
            value = _unescape(text[1:-1], "'")
            if value is None or len(value) != 1:
                raise self.errorf(f"malformed character constant: {text}")
            return ord(value)
        if text.endswith("i"):
            raise self.errorf(f"illegal number syntax: {_quote(text)}")  # complex: not for us
        is_hex = len(text) > 2 and text.lstrip("+-")[:2] in ("0x", "0X")
        try:
            if is_hex and "p" not in text.lower():
                return int(text, 16)
            if not is_hex and not any(c in text for c in ".eEpP"):
                if re.fullmatch(r"[+-]?0[0-7_]+", text):
                    return int(text.replace("_", ""), 8)
                return int(text, 0)
            return float.fromhex(text) if is_hex else float(text)
        except ValueError:
            raise self.errorf(f"illegal number syntax: {_quote(text)}") from None

    def unquote(self, text: str) -> str:
        if text.startswith("`"):
            return text[1:-1]
        value = _unescape(text[1:-1], '"')
        if value is None:
            raise self.errorf("invalid syntax")
        return value


_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unescape(body: str, quote: str) -> str | None:
    """Go's strconv.Unquote of a quoted body; None where Go says `invalid syntax`."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == quote:
            return None
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1 : i + 2]
        if esc in _SIMPLE:
            out.append(_SIMPLE[esc])
            i += 2
        elif esc == quote:
            out.append(quote)
            i += 2
        elif esc in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i + 2 : i + 2 + size]
            if len(digits) != size or not all(c in "0123456789abcdefABCDEF" for c in digits):
                return None
            code = int(digits, 16)
            if code > 0x10FFFF:
                return None
            out.append(chr(code))
            i += 2 + size
        elif esc and esc in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits) or int(digits, 8) > 255:
                return None
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            return None
    return "".join(out)


def _quote(text: str) -> str:
    return go_quote(text)


def parse(name: str, text: str, funcs: Container[str]) -> dict[str, n.ListNode]:
    """The tree of `text` under `name`, with the templates it {{define}}s."""
    return Parser(name, text, funcs).parse()
