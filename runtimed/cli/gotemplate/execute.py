"""Running a parsed template against data, with Go's text/template semantics and messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtimed.cli.gotemplate import nodes as n
from runtimed.cli.gotemplate.errors import ExecError
from runtimed.cli.gotemplate.funcs import ANY, INT, STR, STRS, Func, FuncError
from runtimed.cli.gotemplate.gofmt import format_value, go_quote
from runtimed.cli.gotemplate.values import MISSING, GoMap, Struct, truth, type_name

# Nested {{template}} calls allowed (Go allows 100000; Python's stack is smaller).
MAX_DEPTH = 100


class _NoFinal:
    """No value piped in from the previous command (Go's missingVal)."""

    __slots__ = ()


NO_FINAL: Any = _NoFinal()


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class State:
    def __init__(
        self,
        name: str,
        text: str,
        trees: Mapping[str, n.ListNode],
        funcs: Mapping[str, Func],
        missingkey: str,
    ) -> None:
        self.parse_name = name
        self.name = name
        self.text = text
        self.trees = trees
        self.funcs = funcs
        self.missing_error = missingkey == "error"
        self.out: list[str] = []
        self.vars: list[list[Any]] = []
        self.node: n.Node | None = None
        self.depth = 0

    def run(self, data: Any) -> str:
        self.vars = [["$", data]]
        try:
            self.walk(data, self.trees[self.name])
        except ExecError as err:
            err.output = "".join(self.out)
            raise
        except RecursionError:
            err = self.errorf("exceeded maximum template depth")
            err.output = "".join(self.out)
            raise err from None
        return "".join(self.out)

    # --- errors ------------------------------------------------------------------------

    def errorf(self, message: str) -> ExecError:
        if self.node is None:
            return ExecError(f"template: {self.parse_name}: {message}")
        before = self.text[: self.node.pos]
        line = 1 + before.count("\n")
        col = len(before[before.rfind("\n") + 1 :].encode())
        return ExecError(
            f"template: {self.parse_name}:{line}:{col}: executing {go_quote(self.name)} "
            f"at <{self.node}>: {message}"
        )

    # --- variables ---------------------------------------------------------------------

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def set_var(self, name: str, value: Any) -> None:
        for var in reversed(self.vars):
            if var[0] == name:
                var[1] = value
                return
        raise self.errorf(f"undefined variable: {name}")

    def var_value(self, name: str) -> Any:
        for var in reversed(self.vars):
            if var[0] == name:
                return var[1]
        raise self.errorf(f"undefined variable: {name}")

    # --- walking the tree --------------------------------------------------------------

    def walk(self, dot: Any, node: n.Node) -> None:
        if isinstance(node, n.TextNode):
            self.out.append(node.text)
        elif isinstance(node, n.ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, n.ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, value)
        elif isinstance(node, n.BranchNode):
            if node.keyword == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(dot, node)
        elif isinstance(node, n.TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, n.BreakNode):
            raise _Break
        elif isinstance(node, n.ContinueNode):
            raise _Continue
        else:
            raise self.errorf(f"unknown node: {node}")

    def print_value(self, node: n.Node, value: Any) -> None:
        self.node = node
        if callable(value) and not isinstance(value, Struct):
            raise self.errorf(f"can't print {node} of type func")
        self.out.append(format_value(value, top=True))

    def walk_if_or_with(self, dot: Any, node: n.BranchNode) -> None:
        mark = len(self.vars)
        value = self.eval_pipeline(dot, node.pipe)
        if truth(value):
            self.walk(value if node.keyword == "with" else dot, node.list)
        elif node.else_list is not None:
            self.walk(dot, node.else_list)
        self.pop(mark)

    def walk_range(self, dot: Any, node: n.BranchNode) -> None:
        self.node = node
        mark = len(self.vars)
        value = self.eval_pipeline(dot, node.pipe)
        decl, assign = node.pipe.decl, node.pipe.is_assign
        if isinstance(value, Mapping):
            pairs: Any = ((k, value[k]) for k in _sorted_keys(value))
        elif isinstance(value, (list, tuple)):
            pairs = enumerate(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(decl) > 1:
                raise self.errorf(f"can't use {value} to iterate over more than one variable")
            pairs = ((i, i) for i in range(value))
        elif value is None or value is MISSING:
            pairs = ()
        else:
            raise self.errorf(f"range can't iterate over {format_value(value)}")
        ran = False
        for key, elem in pairs:
            ran = True
            if decl:
                if assign:
                    self.set_var(decl[0].ident[0], key if len(decl) > 1 else elem)
                else:
                    self.vars[-1][1] = elem
            if len(decl) > 1:
                if assign:
                    self.set_var(decl[1].ident[0], elem)
                else:
                    self.vars[-2][1] = key
            inner = len(self.vars)
            try:
                self.walk(elem, node.list)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                self.pop(inner)
        if not ran and node.else_list is not None:
            self.walk(dot, node.else_list)
        self.pop(mark)

    def walk_template(self, dot: Any, node: n.TemplateNode) -> None:
        self.node = node
        tree = self.trees.get(node.name)
        if tree is None:
            raise self.errorf(f"template {go_quote(node.name)} not defined")
        if self.depth >= MAX_DEPTH:
            raise self.errorf(f"exceeded maximum template depth ({MAX_DEPTH})")
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe else MISSING
        saved = self.name, self.vars
        self.name, self.vars = node.name, [["$", new_dot]]
        self.depth += 1
        try:
            self.walk(new_dot, tree)
        finally:
            self.depth -= 1
            self.name, self.vars = saved

    # --- pipelines and commands --------------------------------------------------------

    def eval_pipeline(self, dot: Any, pipe: n.PipeNode) -> Any:
        self.node = pipe
        value = NO_FINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.push(var.ident[0], value)
        return value

    def eval_command(self, dot: Any, cmd: n.CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, n.FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, n.ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, n.IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, n.PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, n.VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, n.LiteralNode):
            return first.value
        if isinstance(first, n.DotNode):
            return dot
        if isinstance(first, n.NilNode):
            raise self.errorf("nil is not a command")
        raise self.errorf(f"can't evaluate command {go_quote(str(first))}")

    def not_a_function(self, args: list[n.Node], final: Any) -> None:
        if len(args) > 1 or final is not NO_FINAL:
            raise self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_field_node(self, dot: Any, field: n.FieldNode, args: list[n.Node], final: Any) -> Any:
        self.node = field
        return self.eval_field_chain(dot, dot, field, field.ident, args, final)

    def eval_chain_node(self, dot: Any, chain: n.ChainNode, args: list[n.Node], final: Any) -> Any:
        self.node = chain
        if isinstance(chain.node, n.NilNode):
            raise self.errorf(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, chain.node)
        return self.eval_field_chain(dot, receiver, chain, chain.fields, args, final)

    def eval_variable_node(
        self, dot: Any, var: n.VariableNode, args: list[n.Node], final: Any
    ) -> Any:
        self.node = var
        value = self.var_value(var.ident[0])
        if len(var.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, var, var.ident[1:], args, final)

    def eval_field_chain(
        self,
        dot: Any,
        receiver: Any,
        node: n.Node,
        ident: list[str],
        args: list[n.Node],
        final: Any,
    ) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, [], NO_FINAL, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_field(
        self, dot: Any, name: str, node: n.Node, args: list[n.Node], final: Any, receiver: Any
    ) -> Any:
        if receiver is MISSING:
            if self.missing_error:
                raise self.errorf(f"nil data; no entry for key {go_quote(name)}")
            return MISSING
        if receiver is None:
            raise self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        has_args = len(args) > 1 or final is not NO_FINAL
        if isinstance(receiver, Struct):
            if name in receiver.fields:
                value = receiver.fields[name]
                if callable(value):
                    method = Func(value, (), ANY)
                    return self.eval_call(dot, method, node, name, args, final)
                if has_args:
                    raise self.errorf(f"{name} has arguments but cannot be invoked as function")
                return value
        elif isinstance(receiver, Mapping):
            if callable(receiver.get(name)):  # a map type's method (docker's header Label)
                method = Func(receiver[name], (), ANY)
                return self.eval_call(dot, method, node, name, args, final)
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            if self.missing_error and not isinstance(receiver, GoMap):
                raise self.errorf(f"map has no entry for key {go_quote(name)}")
            return MISSING
        raise self.errorf(f"can't evaluate field {name} in type {type_name(receiver)}")

    # --- function calls ----------------------------------------------------------------

    def eval_function(
        self, dot: Any, ident: n.IdentifierNode, cmd: n.Node, args: list[n.Node], final: Any
    ) -> Any:
        self.node = ident
        func = self.funcs.get(ident.name)
        if func is None:
            raise self.errorf(f"{go_quote(ident.name)} is not a defined function")
        if ident.name in ("and", "or") and func.fn is None:
            return self.eval_and_or(dot, ident.name, args[1:], final)
        return self.eval_call(dot, func, cmd, ident.name, args, final)

    def eval_and_or(self, dot: Any, name: str, args: list[n.Node], final: Any) -> Any:
        if len(args) + (final is not NO_FINAL) < 1:
            raise self.errorf(f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = None
        for arg in args:
            value = self.eval_arg(dot, arg)
            if truth(value) == (name == "or"):
                return value
        if final is not NO_FINAL:
            value = final
        return value

    def eval_call(
        self, dot: Any, func: Func, node: n.Node, name: str, args: list[n.Node], final: Any
    ) -> Any:
        args = args[1:]
        num_in = len(args) + (final is not NO_FINAL)
        fixed = len(func.params)
        if func.variadic is not None:
            if num_in < fixed:
                raise self.errorf(
                    f"wrong number of args for {name}: want at least {fixed} got {len(args)}"
                )
        elif num_in != fixed:
            raise self.errorf(f"wrong number of args for {name}: want {fixed} got {num_in}")
        kinds = [func.params[i] if i < fixed else func.variadic for i in range(num_in)]
        argv = [self.eval_typed_arg(dot, arg, kinds[i]) for i, arg in enumerate(args)]
        if final is not NO_FINAL:
            argv.append(self.validate(final, kinds[-1]))
        try:
            return func.fn(*argv)
        except FuncError as exc:
            self.node = node
            raise self.errorf(f"error calling {name}: {exc}") from None

    def eval_arg(self, dot: Any, node: n.Node) -> Any:
        self.node = node
        if isinstance(node, n.DotNode):
            return dot
        if isinstance(node, n.NilNode):
            return None
        if isinstance(node, n.FieldNode):
            return self.eval_field_node(dot, node, [node], NO_FINAL)
        if isinstance(node, n.VariableNode):
            return self.eval_variable_node(dot, node, [node], NO_FINAL)
        if isinstance(node, n.PipeNode):
            return self.eval_pipeline(dot, node)
        if isinstance(node, n.IdentifierNode):
            return self.eval_function(dot, node, node, [node], NO_FINAL)
        if isinstance(node, n.ChainNode):
            return self.eval_chain_node(dot, node, [node], NO_FINAL)
        if isinstance(node, n.LiteralNode):
            return node.value
        raise self.errorf(f"can't handle {node} for arg")

    def eval_typed_arg(self, dot: Any, node: n.Node, kind: str | None) -> Any:
        """An argument for a typed parameter: constants are checked as constants."""
        if not isinstance(node, n.LiteralNode) or kind not in (STR, INT, STRS):
            return self.validate(self.eval_arg(dot, node), kind)
        self.node = node
        value = node.value
        if kind == STR and node.text[:1] in ('"', "`"):
            return value
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == INT and number and float(value).is_integer():
            return int(value)
        if kind == STRS:
            raise self.errorf(f"can't handle {node} for arg of type {kind}")
        raise self.errorf(f"expected {'string' if kind == STR else 'integer'}; found {node}")

    def validate(self, value: Any, kind: str | None) -> Any:
        """Go's check that an argument fits the function's parameter type."""
        nil = value is None or value is MISSING
        if kind == STR:
            ok = isinstance(value, str)
        elif kind == INT:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == STRS:
            if nil:
                return []
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        else:
            return None if value is MISSING else value
        if ok:
            return value
        if nil:
            raise self.errorf(f"invalid value; expected {kind}")
        raise self.errorf(f"wrong type for value; expected {kind}; got {type_name(value)}")


def _sorted_keys(mapping: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(mapping)
    except TypeError:
        return sorted(mapping, key=str)
