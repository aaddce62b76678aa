"""Per-shim memory of each log driver: what a container pays for its driver.

Run from the tree root as the unprivileged user: `python -m bench.log_memory`
(`bench/run.sh logmem` does that as root). One daemon; for each driver, N
sleeping containers; then RSS, PSS and USS (private pages) of their shims from
/proc/PID/smaps_rollup, median per driver, and each driver's extra cost over
json-file. Drivers that talk to a receiver need none to be up: syslog sends
datagrams (udp), fluentd runs with fluentd-async, awslogs with mode=non-blocking
(which delays creating the stream), so the shims load their code and client
libraries exactly as in use. Exits non-zero only if a container fails to start.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchError, make_busybox_rootfs, mb, print_table, stop_runtimed
from tests.support.daemon import Daemon
from tests.support.logreceivers import AWS_ENV, free_port

IMAGE = "bench/busybox:mem"


def driver_opts() -> dict[str, list[str]]:
    port = free_port()
    return {
        "none": ["--log-driver", "none"],
        "json-file": ["--log-driver", "json-file"],
        "local": ["--log-driver", "local"],
        "syslog": ["--log-driver", "syslog", "--log-opt", f"syslog-address=udp://127.0.0.1:{port}"],
        "fluentd": [
            "--log-driver",
            "fluentd",
            "--log-opt",
            f"fluentd-address=127.0.0.1:{port}",
            "--log-opt",
            "fluentd-async=true",
        ],
        "awslogs": [
            "--log-driver",
            "awslogs",
            "--log-opt",
            "awslogs-group=bench",
            "--log-opt",
            f"awslogs-endpoint=http://127.0.0.1:{port}",
            "--log-opt",
            "mode=non-blocking",
        ],
    }


def smaps(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        fields[key] = int(value.split()[0])
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=5, help="per driver (default 5)")
    args = parser.parse_args(argv)
    daemon = Daemon()
    daemon.env.update(AWS_ENV)
    results: dict[str, dict[str, float]] = {}
    try:
        daemon.start()
        work = Path(tempfile.mkdtemp(prefix="rtd-bench-mem-"))
        rootfs = work / "busybox.tar"
        make_busybox_rootfs(rootfs)
        daemon.ok("import", str(rootfs), IMAGE)
        subprocess.run(["rm", "-rf", str(work)], check=False)
        shims: dict[str, list[int]] = {}
        for driver, opts in driver_opts().items():
            shims[driver] = []
            for _ in range(args.containers):
                result = daemon.ctl("run", "-d", *opts, IMAGE, "sleep", "100000")
                if result.returncode != 0:
                    raise BenchError(f"{driver}: {result.stderr}")
                cid = result.stdout.strip()
                pid_file = next(daemon.root.glob(f"**/containers/{cid}/shim.pid"))
                shims[driver].append(int(pid_file.read_text()))
        time.sleep(1.0)  # let lazily started threads and clients settle
        for driver, pids in shims.items():
            readings = [smaps(pid) for pid in pids]
            results[driver] = {
                key: statistics.median(r[field] for r in readings)
                for key, field in (("rss", "Rss"), ("pss", "Pss"))
            } | {
                "uss": statistics.median(r["Private_Clean"] + r["Private_Dirty"] for r in readings)
            }
    except (BenchError, RuntimeError) as exc:
        print(f"log memory bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_runtimed(daemon)
    base = results["json-file"]
    rows = [
        [
            driver,
            mb(r["rss"]),
            mb(r["pss"]),
            mb(r["uss"]),
            f"{(r['uss'] - base['uss']) / 1024:+.1f} MB",
        ]
        for driver, r in results.items()
    ]
    total = len(results) * args.containers
    print(f"\nshim memory per log driver ({args.containers} containers each, {total} running):")
    print_table(["driver", "RSS", "PSS", "USS (private)", "USS vs json-file"], rows, "  ")
    print("  medians over each driver's shims; PSS shares the launcher's pages among all shims")
    print(json.dumps({"bench": "log_memory", "kib": results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
