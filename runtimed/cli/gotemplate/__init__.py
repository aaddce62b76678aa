"""Go's text/template as docker users write it, in plain Python (stdlib only).

The modules, in the order a template flows through them:

- ``lexer``: template text into items (text, delimiters, operands), as Go lexes it;
- ``parser`` (with ``nodes``): items into a tree, with Go's parse error messages;
- ``execute`` (with ``funcs``): the tree run against data, Go's exec error messages;
- ``gofmt`` (with ``values``): Go's ``%v`` printing and ``fmt.Sprintf`` verbs;
- ``template``: the entry point, ``Template(text).execute(data)``.

Nothing here is imported until a command is given a template: runtimectl's start-up
does not pay for it. This ``__init__`` stays empty so importing one module (``gofmt``
for ``ps``'s quoting) does not load the others.
"""
