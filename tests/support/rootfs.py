"""Look at an image's root filesystem the way a container would see it.

The layers are mounted read-only with overlayfs inside a user namespace of
the test user's own (unshare --map-auto), which is where whiteouts and
opaque directories take effect, and the requested paths are read back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_READER = r"""
import json, os, subprocess, sys, tempfile
lowers, paths = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if len(lowers) == 1:
    root = lowers[0]
else:
    root = tempfile.mkdtemp()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "ro,userxattr,lowerdir=" + ":".join(lowers), root], check=True)
out = {}
for p in paths:
    full = os.path.join(root, p.lstrip("/"))
    if os.path.islink(full):
        out[p] = {"link": os.readlink(full)}
    elif os.path.isdir(full):
        out[p] = {"dir": sorted(os.listdir(full))}
    elif os.path.exists(full):
        st = os.stat(full)
        out[p] = {"data": open(full, "rb").read().decode("latin-1"),
                  "uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode & 0o7777}
    else:
        out[p] = None
print(json.dumps(out))
"""


def read_paths(lower_dirs: str | list[Path], paths: list[str]) -> dict[str, dict | None]:
    """{path: None | {"data", "uid", "gid", "mode"} | {"dir": [...]} | {"link": target}}."""
    lowers = lower_dirs.split(":") if isinstance(lower_dirs, str) else [str(p) for p in lower_dirs]
    proc = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-auto",
            "--map-root-user",
            "--mount",
            sys.executable,
            "-c",
            _READER,
            json.dumps(lowers),
            json.dumps(paths),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)
