"""Generate the Python gRPC stubs in runtimed/gen from the .proto files here.

    python proto/generate.py            # rewrite runtimed/gen
    python proto/generate.py --check    # exit 1 if runtimed/gen is stale

protoc writes absolute imports (`from runtime.v1 import api_pb2`); they are
rewritten to point into the runtimed.gen package so the stubs need no
sys.path tricks.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
GEN_PACKAGE = "runtimed.gen"
GEN_DIR = PROTO_ROOT.parent / "runtimed" / "gen"
PROTOS = ["runtime/v1/api.proto", "runtimed/v1/engine.proto"]
_IMPORT_RE = re.compile(r"^from ((?:runtime|runtimed)\.v1) import", re.MULTILINE)


def generate(out: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_ROOT / proto),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")
    for path in out.rglob("*.py*"):
        text = _IMPORT_RE.sub(rf"from {GEN_PACKAGE}.\1 import", path.read_text())
        path.write_text(text)
    for directory in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()


def stale_files(expected: Path, actual: Path) -> list[str]:
    problems = []
    for path in sorted(expected.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(expected)
        other = actual / rel
        if not other.exists() or not filecmp.cmp(path, other, shallow=False):
            problems.append(str(rel))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify runtimed/gen")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            problems = stale_files(fresh, GEN_DIR)
            if problems:
                print("stale generated stubs (run python proto/generate.py):", *problems)
                return 1
            return 0
        for path in fresh.rglob("*"):
            target = GEN_DIR / path.relative_to(fresh)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
