"""Build stages: FROM lines, the ARGs before them, and which stages a target needs.

A stage is known by its index and by its `AS` name (case-insensitive). A
stage depends on the stage its FROM names and on those its `COPY --from` and
`RUN --mount=from=` name; building a target builds only those, earlier ones
first, as BuildKit does (the classic builder built them all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runtimed.build.dockerfile import Dockerfile, Instruction
from runtimed.build.shellwords import expand_word, expand_words, split_quoted
from runtimed.errors import InvalidArgument

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")

# Docker passes these to RUN without an ARG line, and keeps them out of the image history.
PROXY_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)


@dataclass
class Stage:
    index: int
    name: str  # "" when unnamed
    base: str  # as written (expanded with the meta args)
    platform: str
    from_line: Instruction
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or str(self.index)


@dataclass
class Plan:
    meta_args: list[Instruction]  # ARG lines before the first FROM
    stages: list[Stage]
    meta_values: dict[str, str]  # their values after --build-arg
    meta_names: frozenset[str] = frozenset()  # the names those ARG lines declare


def parse_arg(inst: Instruction, env: dict[str, str], escape: str) -> list[tuple[str, str | None]]:
    """ARG NAME[=default] ...: (name, default or None); defaults expanded in `env`."""
    out: list[tuple[str, str | None]] = []
    for word in split_quoted(inst.args, escape):
        name, sep, value = word.partition("=")
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InvalidArgument(f"line {inst.line}: ARG names must be identifiers: {word!r}")
        out.append((name, expand_word(value, env, escape) if sep else None))
    return out


def plan(dockerfile: Dockerfile, build_args: dict[str, str], automatic: dict[str, str]) -> Plan:
    meta: list[Instruction] = []
    stages: list[Stage] = []
    meta_values: dict[str, str] = dict(automatic)
    meta_names: set[str] = set()
    escape = dockerfile.escape
    for inst in dockerfile.instructions:
        if inst.keyword == "FROM":
            stages.append(_stage(inst, len(stages), meta_values, escape, stages))
            continue
        if not stages:
            if inst.keyword != "ARG":
                raise InvalidArgument(
                    f"dockerfile line {inst.line}: no build stage in current context: "
                    f"{inst.keyword} must come after FROM (only ARG may come before it)"
                )
            meta.append(inst)
            for name, default in parse_arg(inst, meta_values, escape):
                meta_names.add(name)
                if name in build_args:
                    meta_values[name] = build_args[name]
                elif default is not None:
                    meta_values[name] = default
            continue
        stages[-1].instructions.append(inst)
    if not stages:
        raise InvalidArgument("the Dockerfile has no FROM instruction: nothing to build")
    return Plan(
        meta_args=meta, stages=stages, meta_values=meta_values, meta_names=frozenset(meta_names)
    )


def _stage(
    inst: Instruction, index: int, meta: dict[str, str], escape: str, earlier: list[Stage]
) -> Stage:
    words = expand_words(inst.args, meta, escape)
    name = ""
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            raise InvalidArgument(
                f"line {inst.line}: invalid name for build stage: {words[2]!r}, "
                "name can't start with a number or contain symbols"
            )
        if any(s.name == name for s in earlier):
            raise InvalidArgument(f"line {inst.line}: duplicate name {name!r} for build stages")
    elif len(words) != 1:
        raise InvalidArgument(
            f"line {inst.line}: FROM requires either one or three arguments (FROM IMAGE [AS NAME])"
        )
    if not words[0]:
        raise InvalidArgument(
            f"line {inst.line}: FROM: base name ({inst.args}) should not be blank"
        )
    platform = expand_word(inst.flag("platform") or "", meta, escape)
    return Stage(index=index, name=name, base=words[0], platform=platform, from_line=inst)


def find_stage(stages: list[Stage], ref: str, before: int | None = None) -> Stage | None:
    """The stage `ref` names (a name or an index), among those before index `before`."""
    pool = stages if before is None else stages[:before]
    lowered = ref.lower()
    for stage in pool:
        if stage.name and stage.name == lowered:
            return stage
    if ref.isdigit():
        index = int(ref)
        if index < len(pool):
            return pool[index]
        raise InvalidArgument(
            f"invalid stage index {ref}: only {len(pool)} stage(s) before this one"
        )
    return None


def stage_refs(stage: Stage, stages: list[Stage], meta: dict[str, str], escape: str) -> list[Stage]:
    """The earlier stages `stage` needs: its FROM base, COPY --from and RUN --mount from=."""
    needed: list[Stage] = []
    base = find_stage(stages, stage.base, stage.index) if not stage.base.isdigit() else None
    if base is not None:
        needed.append(base)
    for inst in stage.instructions:
        refs: list[str] = []
        if inst.keyword in ("COPY", "ADD") and inst.flag("from"):
            refs.append(inst.flag("from") or "")
        if inst.keyword == "RUN":
            for mount in inst.flag_values("mount"):
                for part in mount.split(","):
                    key, _, value = part.partition("=")
                    if key.strip() == "from" and value:
                        refs.append(value)
        for ref in refs:
            found = find_stage(stages, expand_word(ref, meta, escape), stage.index)
            if found is not None:
                needed.append(found)
    return needed


def needed_stages(plan_: Plan, target: str, escape: str) -> tuple[list[Stage], Stage]:
    """The stages to build for `target` (default: the last), in order; and the target."""
    stages = plan_.stages
    if target:
        found = find_stage(stages, target)
        if found is None:
            raise InvalidArgument(f"target stage {target!r} could not be found")
        final = found
    else:
        final = stages[-1]
    want: set[int] = set()
    todo = [final]
    while todo:
        stage = todo.pop()
        if stage.index in want:
            continue
        want.add(stage.index)
        todo.extend(stage_refs(stage, stages, plan_.meta_values, escape))
    return [s for s in stages if s.index in want], final
