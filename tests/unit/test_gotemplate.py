"""Go's text/template as runtimectl runs it.

The expected outputs and error messages of GO_OUTPUTS and PARSE_ERRORS were taken from
Go itself (docker 28's client, built with Go 1.24, running each template), so these
tests hold the engine to Go's behaviour rather than to our reading of it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtimed.cli.gotemplate.errors import ExecError, ParseError
from runtimed.cli.gotemplate.template import Template
from runtimed.cli.gotemplate.values import GoMap, Struct


def run(text: str, data: Any = None, **kwargs: Any) -> str:
    return Template(text).execute(data, **kwargs)


# Templates that need no data: Go's output for each, byte for byte.
GO_OUTPUTS = [
    (
        '{{printf "%5.2f|%q|%x|%-6s|%05d|%+d|%v|%s" 3.14159 "a\\tb" "hi" "ab" 42 5 1.5 "x"}}',
        ' 3.14|"a\\tb"|6869|ab    |00042|+5|1.5|x',
    ),
    (
        '{{printf "%d %d" 1}}',
        "1 %!d(MISSING)",
    ),
    (
        '{{printf "%d" 1 2 "x"}}',
        "1%!(EXTRA int=2, string=x)",
    ),
    (
        '{{printf "%s" 5}}',
        "%!s(int=5)",
    ),
    (
        '{{printf "%z" 5}}',
        "%!z(int=5)",
    ),
    (
        '{{printf "%t %v %T %T %T" true nil 1 1.5 "s"}}',
        "true <nil> int float64 string",
    ),
    (
        '{{printf "%x %X %o %b %c %U %q" 255 255 8 5 65 65 65}}',
        "ff FF 10 101 A U+0041 'A'",
    ),
    (
        (
            '{{printf "%e %E %g %G %.3g %8.3f|%-8.2f|" 123456.789 0.00012'
            "3 1e21 1e-7 3.14159 2.5 2.5}}"
        ),
        "1.234568e+05 1.230000E-04 1e+21 1E-07 3.14    2.500|2.50    |",
    ),
    (
        '{{printf "%#x %#o %+.2e % d %06.2f" 255 8 12345.678 5 -3.14159}}',
        "0xff 010 +1.23e+04  5 -03.14",
    ),
    (
        '{{printf "%10q|%-10v|%.2s|%5.1s|" "hi" true "hello" "hello"}}',
        '      "hi"|true      |he|    h|',
    ),
    (
        '{{printf "%v %v %v %v %v" 1e6 123456.0 1234567.0 0.0001 0.00001}}',
        "1e+06 123456 1.234567e+06 0.0001 1e-05",
    ),
    (
        '{{print 1 2 "a" "b" 3 true false}}',
        "1 2ab3 true false",
    ),
    (
        '{{println 1 "a" true}}x',
        "1 a true\nx",
    ),
    (
        '{{split "a,b,c" ","}} {{join (split "a b c" " ") "-"}} {{len (split "a,b" ",")}}',
        "[a b c] a-b-c 2",
    ),
    (
        '{{title "hello world-foo bar_baz o\'neil"}} {{upper "abc"}} {{lower "ABC"}}',
        "Hello World-Foo Bar_baz O'Neil ABC abc",
    ),
    (
        (
            '{{pad "abc" 2 3}}| {{pad "" 2 3}}| {{truncate "abcdef" 3}}'
            ' {{truncate "ab" 3}} {{truncate "abc" 3}}'
        ),
        "  abc   | | abc ab abc",
    ),
    (
        '{{json "a<b>&c"}} {{json (split "a,b" ",")}} {{json 1.5}} {{json nil}}',
        '"a<b>&c" ["a","b"] 1.5 null',
    ),
    (
        (
            '{{eq 1 1}} {{eq 1 2 3 1}} {{ne "a" "b"}} {{lt 1 2}} {{le 2 2}}'
            ' {{gt "b" "a"}} {{ge 1.5 2.5}}'
        ),
        "true true true true true true false",
    ),
    (
        '{{and 1 0 2}} {{and 1 2}} {{or 0 "" "x"}} {{or 0 ""}} {{not 0}} {{not "x"}}',
        "0 2 x  true false",
    ),
    (
        '{{html "<a href=\'x\'>&\\"</a>"}} {{js "a\'b\\"c<d>\\n="}} {{urlquery "a b&c=d/é~"}}',
        (
            "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt; a\\'b\\\"c\\u003C"
            "d\\u003E\\u000A\\u003D a+b%26c%3Dd%2F%C3%A9~"
        ),
    ),
    (
        (
            '{{index "abc" 1}} {{slice "abcdef" 1 3}} {{len "héllo"}}'
            ' {{slice (split "a,b,c,d" ",") 1 3}}'
        ),
        "98 bc 6 [b c]",
    ),
    (
        (
            '{{range $i, $v := split "x,y" ","}}{{$i}}{{$v}}{{else}}none{{end}}'
            '|{{range split "" ","}}[{{.}}]{{end}}'
        ),
        "0x1y|[]",
    ),
    (
        "{{range 3}}{{.}}{{end}} {{range $i := 2}}{{$i}}{{end}}",
        "012 01",
    ),
    (
        (
            '{{range $v := split "a,b,c" ","}}{{if eq $v "b"}}{{continue}}{{end}}'
            '{{$v}}{{end}} {{range split "a,b,c" ","}}{{if eq . "b"}}{{break}}'
            "{{end}}{{.}}{{end}}"
        ),
        "ac a",
    ),
    (
        (
            '{{if 0}}a{{else if ""}}b{{else if 1}}c{{else}}d{{end}}'
            ' {{with $x := "v"}}{{$x}}{{.}}{{end}} {{with ""}}x{{else with "y"}}'
            "{{.}}{{end}}"
        ),
        "c vv y",
    ),
    (
        '{{- /* comment */ -}}   a  {{- "b" -}}  c   {{"d" -}}\n  e',
        "abc   de",
    ),
    (
        '{{define "T"}}[{{.}}]{{end}}{{template "T" "arg"}}{{block "B" 5}}<{{.}}>{{end}}',
        "[arg]<5>",
    ),
    (
        (
            "{{'a'}} {{'\\n'}} {{0x1F}} {{0o17}} {{017}} {{1_000}} {{-5}} {{+5}}"
            ' {{1.0}} {{1e3}} {{0x1p4}} {{"\\u00e9\\x41\\101"}} {{`raw\\n`}}'
        ),
        "97 10 31 15 15 1000 -5 5 1 1000 16 éAA raw\\n",
    ),
    (
        ('{{printf "%s" (printf "%d-%s" 5 "x")}} {{"x" | printf "%s-%s" "y"}} {{3 | printf "%d"}}'),
        "5-x y-x 3",
    ),
    (
        (
            '{{printf "%v" (split "a b" " ")}} {{printf "%q" (split "a b" " ")}}'
            ' {{printf "%d" (len "ab")}}'
            ' {{printf "%5v|%-5v|" (split "a" ",") 1.5}}'
        ),
        '[a b] ["a" "b"] 2 [    a]|1.5  |',
    ),
    (
        '{{printf "%%|%v|%s" "a"}}',
        "%|a|%!s(MISSING)",
    ),
    (
        '{{printf "%*d|%-*d|%.*f" 5 1 4 2 2 3.14159}}',
        "    1|2   |3.14",
    ),
    (
        "{{1.5e300}} {{-0.0}} {{1e100}} {{123456789.0}} {{0.1}} {{100.5}}\n",
        "1.5e+300 -0 1e+100 1.23456789e+08 0.1 100.5\n",
    ),
]


@pytest.mark.parametrize(("text", "expected"), GO_OUTPUTS)
def test_matches_go(text: str, expected: str) -> None:
    assert run(text) == expected


# Go's parse errors, as `docker inspect -f` reports them after "template parsing error: ".
PARSE_ERRORS = [
    (
        "{{.State.Status",
        "template: :1: unclosed action",
    ),
    (
        "{{.State.Status}",
        "template: :1: bad character U+007D '}'",
    ),
    (
        "{{.A }",
        'template: :1: unexpected "}" in operand',
    ),
    (
        "{{foo}}",
        'template: :1: function "foo" not defined',
    ),
    (
        "{{if}}{{end}}",
        "template: :1: missing value for if",
    ),
    (
        "{{end}}",
        "template: :1: unexpected {{end}}",
    ),
    (
        "{{else}}",
        "template: :1: unexpected {{else}}",
    ),
    (
        "{{range .X}}",
        "template: :1: unexpected EOF",
    ),
    (
        "{{if .X}}{{else}}{{else}}{{end}}",
        "template: :1: expected end; found {{else}}",
    ),
    (
        "{{$x}}",
        'template: :1: undefined variable "$x"',
    ),
    (
        '{{"abc}}',
        "template: :1: unterminated quoted string",
    ),
    (
        "{{`abc}}",
        "template: :1: unterminated raw quoted string",
    ),
    (
        "{{'ab'}}",
        "template: :1: malformed character constant: 'ab'",
    ),
    (
        "{{'a}}",
        "template: :1: unterminated character constant",
    ),
    (
        "{{1a}}",
        'template: :1: bad number syntax: "1a"',
    ),
    (
        "{{.A | 3}}",
        "template: :1: non executable command in pipeline stage 2",
    ),
    (
        "{{(.A}}",
        "template: :1: unclosed left paren",
    ),
    (
        "{{.A)}}",
        "template: :1: unexpected right paren",
    ),
    (
        "{{$x := 1 | $y := 2}}",
        'template: :1: undefined variable "$y"',
    ),
    (
        "{{range $a, $b, $c := .X}}{{end}}",
        "template: :1: too many declarations in range",
    ),
    (
        "{{with $a, $b := .X}}{{end}}",
        "template: :1: too many declarations in with",
    ),
    (
        "{{3.A}}",
        'template: :1: bad number syntax: "3.A"',
    ),
    (
        '{{"x".A}}',
        'template: :1: unexpected . after term "\\"x\\""',
    ),
    (
        "{{/* unclosed",
        "template: :1: unclosed comment",
    ),
    (
        "{{/* x */ .A}}",
        "template: :1: comment ends before closing delimiter",
    ),
    (
        "{{break}}",
        "template: :1: {{break}} outside {{range}}",
    ),
    (
        "{{range .X}}{{break 1}}{{end}}",
        'template: :1: unexpected "1" in {{break}}',
    ),
    (
        "{{template .X}}",
        'template: :1: unexpected ".X" in template clause',
    ),
    (
        '{{define "x"}}{{else}}{{end}}',
        "template: :1: unexpected {{else}} in define clause",
    ),
    (
        '{{"\\q"}}',
        "template: :1: invalid syntax",
    ),
    (
        "{{a.b}}",
        'template: :1: function "a" not defined',
    ),
    (
        "{{.A.B c}}",
        'template: :1: function "c" not defined',
    ),
    (
        "{{@}}",
        'template: :1: unexpected "@" in command',
    ),
    (
        "{{.A",
        "template: :1: unclosed action",
    ),
    (
        "{{if .A}}",
        "template: :1: unexpected EOF",
    ),
    (
        "{{else}}",
        "template: :1: unexpected {{else}}",
    ),
    (
        "{{end",
        "template: :1: unclosed action",
    ),
    (
        "{{if .Name}}\nx\n{{else}}\n{{end",
        "template: :4: unclosed action",
    ),
    (
        'x {{"a\nb"}}',
        "template: :1: unterminated quoted string",
    ),
    (
        "{{if .Name}}\n{{else}}\n{{else}}\n{{end}}",
        "template: :3: expected end; found {{else}}",
    ),
    (
        "{{.Name}}\n{{foo}}",
        'template: :2: function "foo" not defined',
    ),
    (
        "{{with .Name}}\n{{end}}{{end}}",
        "template: :2: unexpected {{end}}",
    ),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors_match_go(text: str, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        Template(text)
    assert caught.value.message == message


DOC = {
    "Name": "/web",
    "Args": ["-c", "echo hi"],
    "State": {"Status": "running", "Running": True, "ExitCode": 0, "Health": None},
    "Config": {
        "Labels": GoMap({"tier": "front", "app": "shop"}, ""),
        "Env": ["A=1", "B=2"],
    },
    "NetworkSettings": {
        "Networks": GoMap(
            {"net2": {"IPAddress": "10.89.0.3"}, "bridge": {"IPAddress": "10.88.0.2"}}
        )
    },
    "Sizes": [1.5, 2, None, True],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # range over a map goes in key order; one variable is the element, two are key, element
        ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.88.0.2 10.89.0.3 "),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "app=shop;tier=front;"),
        ("{{range $v := .Args}}[{{$v}}]{{end}}", "[-c][echo hi]"),
        ("{{range $i, $v := .Args}}{{$i}}{{$v}}{{end}}", "0-c1echo hi"),
        ("{{range .Nope}}x{{else}}empty{{end}}", "empty"),
        ("{{range $n, $e := .NetworkSettings.Networks}}{{$n}}:{{$e.IPAddress}},{{end}}",
         "bridge:10.88.0.2,net2:10.89.0.3,"),
        # $ is the root inside range and with; variables persist to their block's end
        ("{{range .Args}}{{$.Name}}{{end}}", "/web/web"),
        ("{{with .State}}{{.Status}} {{$.Name}}{{end}}", "running /web"),
        ("{{$n := .Name}}{{range .Args}}{{$n}}{{end}}", "/web/web"),
        ("{{$x := 1}}{{range .Args}}{{$x = 2}}{{end}}{{$x}}", "2"),
        # map keys as fields, index with the zero value of the map's type
        ("{{.Config.Labels.app}}|{{.Config.Labels.nope}}|{{index .Config.Labels \"nope\"}}|",
         "shop|<no value>||"),
        ("{{index .NetworkSettings.Networks \"bridge\" \"IPAddress\"}}", "10.88.0.2"),
        # Go's %v: maps sorted, lists spaced, nil, bools, floats
        ("{{.Config.Labels}}", "map[app:shop tier:front]"),
        ("{{.State}}", "map[ExitCode:0 Health:<nil> Running:true Status:running]"),
        ("{{.Sizes}} {{.State.Health}} {{.Nope}}", "[1.5 2 <nil> true] <no value> <no value>"),
        ("{{printf \"%v|%s|%d\" .Args .Args .State.ExitCode}}", "[-c echo hi]|[-c echo hi]|0"),
        # comparisons, and/or/not, len
        ("{{if eq .State.Status \"exited\" \"running\"}}up{{end}}", "up"),
        ("{{if and .State.Running (not .State.ExitCode)}}ok{{end}}", "ok"),
        ("{{if or .Nope .Name}}{{len .Args}}{{end}}", "2"),
        ("{{if gt (len .Config.Env) 1}}many{{else if eq (len .Config.Env) 1}}one{{end}}", "many"),
        ("{{with .Nope}}x{{else with .Name}}{{.}}{{else}}y{{end}}", "/web"),
        # pipelines and parentheses; docker's functions on data
        ("{{.Name | printf \"%q\"}} {{(index .Args 1) | upper}}", '"/web" ECHO HI'),
        ("{{json .Config}}", '{"Labels":{"app":"shop","tier":"front"},"Env":["A=1","B=2"]}'),
        ("{{join (split (index .Config.Env 0) \"=\") \" is \"}}", "A is 1"),
        ("{{slice .Name 1}} {{slice .Args 1 2}}", "web [echo hi]"),
        ("{{range .Args -}} {{.}} {{- end}}", "-cecho hi"),
        ("a {{/* a comment */}} b", "a  b"),
    ],
)  # fmt: skip
def test_template_language(text: str, expected: str) -> None:
    assert run(text, DOC) == expected


ROW = Struct(
    "*formatter.ContainerContext", {"Names": "web", "Label": lambda k: {"a": "1"}.get(k, "")}
)


@pytest.mark.parametrize(
    ("text", "data", "message"),
    [
        ("{{.Nope}}", ROW,
         'template: :1:2: executing "" at <.Nope>: '
         "can't evaluate field Nope in type *formatter.ContainerContext"),
        ("{{.Name.Foo}}", DOC,
         'template: :1:7: executing "" at <.Name.Foo>: can\'t evaluate field Foo in type string'),
        ("x\n  {{.State.Health.Status}}", DOC,
         'template: :2:10: executing "" at <.State.Health.Status>: '
         "nil pointer evaluating interface {}.Status"),
        ("{{index .Args 5}}", DOC,
         'template: :1:2: executing "" at <index .Args 5>: error calling index: '
         "index out of range: 5"),
        ("{{lower 5}}", DOC, 'template: :1:8: executing "" at <5>: expected string; found 5'),
        ("{{lower .Args}}", DOC,
         'template: :1:8: executing "" at <.Args>: wrong type for value; expected string; '
         "got []string"),
        ("{{upper .Nope}}", DOC,
         'template: :1:8: executing "" at <.Nope>: invalid value; expected string'),
        ("{{truncate .Name}}", DOC,
         'template: :1:2: executing "" at <truncate>: wrong number of args for truncate: '
         "want 2 got 1"),
        ("{{eq .Name 1}}", DOC,
         'template: :1:2: executing "" at <eq .Name 1>: error calling eq: '
         "incompatible types for comparison"),
        ("{{range .Name}}{{end}}", DOC,
         'template: :1:8: executing "" at <.Name>: range can\'t iterate over /web'),
        ("{{.Names 1}}", ROW,
         'template: :1:2: executing "" at <.Names>: '
         "Names has arguments but cannot be invoked as function"),
        ("{{nil}}", DOC, 'template: :1:2: executing "" at <nil>: nil is not a command'),
        ("{{template \"x\"}}", DOC,
         'template: :1:11: executing "" at <{{template "x"}}>: template "x" not defined'),
    ],
)  # fmt: skip
def test_exec_errors_are_gos(text: str, data: Any, message: str) -> None:
    with pytest.raises(ExecError) as caught:
        run(text, data)
    assert caught.value.message == message


def test_missingkey_error_is_inspects_second_pass() -> None:
    """docker inspect runs over the JSON document with missingkey=error: a missing struct
    field is an error, a missing key of one of docker's maps is not."""
    with pytest.raises(ExecError) as caught:
        run("{{.State.Nope}}", DOC, missingkey="error")
    assert caught.value.message == (
        'template: :1:8: executing "" at <.State.Nope>: map has no entry for key "Nope"'
    )
    assert run("{{.Config.Labels.nope}}", DOC, missingkey="error") == "<no value>"


def test_struct_methods_take_arguments() -> None:
    assert run('{{.Label "a"}}|{{.Label "b"}}|{{"a" | .Label}}', ROW) == "1||1"
    assert json.loads(run("{{json .}}", ROW)) == {"Names": "web"}  # methods are not data


def test_output_written_before_a_failure_is_kept() -> None:
    with pytest.raises(ExecError) as caught:
        run("a{{.Name}}b{{.Name.X}}", DOC)
    assert caught.value.output == "a/webb"
