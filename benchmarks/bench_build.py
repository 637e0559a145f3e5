"""Build cost: wall time and peak memory of every stage of ``edgeseg build``, measured from outside.

Each case (model, input size, precision) is built in a child process, in a fresh folder, through
:func:`edgeseg.build`. The parent polls the resident memory of the child and its descendants
(``/proc/<pid>/status`` ``VmRSS``, every ``--poll`` seconds) and takes the child's peak from the
kernel when it exits (``wait4`` ``ru_maxrss``, what ``/usr/bin/time -v`` reports). The child writes
the wall-clock time at which each stage ends, so the polled samples are split by stage; build.json's
own per-stage ``peak_rss_mib`` (``VmHWM`` reset per stage, inside the process) is reported beside it.

Presets have random weights: the accuracy guard's gate cannot be met, so the cases pass
``max_miou_drop=100, min_agreement=0``: the guard quantizes and evaluates once and stops (the cost
of one guard round; a real guard may re-quantize a few times, each round a quantize + evaluation).
Calibration and reference images are the synthetic set (``synthetic::calib``). Validation images
are the synthetic ``val`` split written as a folder whose ``classes.txt`` lists 19 classes (the
presets' count; the masks use the first 7), since the guard checks that the classes agree.

Usage::

    python benchmarks/bench_build.py --quick            # R18 at 256x512, INT8 + FP16 (minutes)
    python benchmarks/bench_build.py                    # R18 and R50 at 512x1024, R50 at 1024x2048
    python benchmarks/bench_build.py --case dbmsnet_r50vd_os16:1024x2048:int8 --calib-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The issue's cases: R18 and R50 at 512x1024, R50 at 1024x2048, each INT8 and FP16.
DEFAULT_CASES = [f"{model}:{size}:{precision}"
                 for model, size in (("dbmsnet_r18_os16", "512x1024"), ("dbmsnet_r50vd_os16", "512x1024"),
                                     ("dbmsnet_r50vd_os16", "1024x2048"))
                 for precision in ("int8", "fp16")]
QUICK_CASES = ["dbmsnet_r18_os16:256x512:int8", "dbmsnet_r18_os16:256x512:fp16"]


def _parse_case(text: str) -> dict[str, Any]:
    try:
        model, size, precision = text.split(":")
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--case {text!r}: expected MODEL:HxW:PRECISION, "
                         "e.g. dbmsnet_r18_os16:512x1024:int8") from None
    if precision not in ("int8", "fp16", "fp32"):
        raise SystemExit(f"--case {text!r}: precision must be int8, fp16 or fp32")
    return {"model": model, "input_size": [h, w], "precision": precision}


# --- child ---------------------------------------------------------------------------------------
def _child(spec: dict[str, Any], events: Path) -> None:
    """Run one build, appending ``{"stage", "status", "t"}`` to ``events`` as each stage ends."""
    import edgeseg
    from edgeseg.stages import Reporter

    class StageClock(Reporter):
        def stage(self, name: str, status: str, detail: str = "") -> None:
            with open(events, "a") as f:
                f.write(json.dumps({"stage": name, "status": status, "t": time.time()}) + "\n")

    with open(events, "a") as f:
        f.write(json.dumps({"stage": "<start>", "status": "", "t": time.time()}) + "\n")
    options = dict(spec["options"], input_size=tuple(spec["case"]["input_size"]))
    edgeseg.build(spec["case"]["model"], reporter=StageClock(), precision=spec["case"]["precision"],
                  **options)


# --- parent --------------------------------------------------------------------------------------
def _tree_rss_mib(root: int) -> float:
    """Resident memory of ``root`` and its descendants (MiB), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total / 1024


def _validation_folder(root: Path, size: list[int], count: int, num_classes: int = 19) -> str:
    """Synthetic validation images at ``size`` as a folder set that declares ``num_classes`` classes."""
    from edgeseg.data.synthetic import write_synthetic

    folder = write_synthetic(root, count, size=(size[0], size[1]), split="val")
    names = (folder / "classes.txt").read_text().splitlines()
    names += [f"unused{i} 0 0 0" for i in range(len(names), num_classes)]
    (folder / "classes.txt").write_text("\n".join(names) + "\n")
    return f"folder:{folder}"


def run_case(case: dict[str, Any], options: dict[str, Any], workdir: Path, poll: float) -> dict[str, Any]:
    """Build one case in a child process; time and memory per stage."""
    folder = Path(tempfile.mkdtemp(prefix="build-", dir=workdir))
    events = folder / "events.jsonl"
    val_data = _validation_folder(folder / "val", case["input_size"], options["val_size"])
    options = dict(options, val_data=val_data)
    spec = {"case": case, "options": dict(options, out_dir=str(folder / "out"))}
    log = folder / "child.log"
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec), str(events)],
                                 stdout=out, stderr=subprocess.STDOUT)
        samples = []
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            samples.append((time.time(), _tree_rss_mib(child.pid)))
            time.sleep(poll)
    result: dict[str, Any] = {"case": case, "val_data": "synthetic val split, 19-class folder",
                              "exit_status": os.waitstatus_to_exitcode(status),
                              "child_max_rss_mib": round(usage.ru_maxrss / 1024, 1),
                              "polled_peak_rss_mib": round(max((r for _, r in samples), default=0.0), 1)}
    if result["exit_status"] != 0:
        result["error"] = log.read_text()[-2000:]
    marks = [json.loads(line) for line in events.read_text().splitlines()] if events.is_file() else []
    builds = list((folder / "out").glob("*/build.json"))
    recorded = json.loads(builds[0].read_text())["stages"] if builds else {}
    stages = []
    for before, mark in zip(marks, marks[1:], strict=False):
        inside = [r for t, r in samples if before["t"] <= t <= mark["t"]]
        entry = recorded.get(mark["stage"], {})
        stages.append({"stage": mark["stage"], "status": mark["status"],
                       "seconds": round(mark["t"] - before["t"], 1),
                       "polled_peak_rss_mib": round(max(inside), 1) if inside else None,
                       "recorded_seconds": entry.get("duration_s"),
                       "recorded_peak_rss_mib": entry.get("peak_rss_mib")})
    result["stages"] = stages
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["| case | stage | time (s) | peak RSS, polled from outside (MiB) | peak RSS, build.json (MiB) |",
             "|---|---|---:|---:|---:|"]
    for r in results:
        c = r["case"]
        label = f"{c['model']} {c['input_size'][0]}x{c['input_size'][1]} {c['precision']}"
        for s in r["stages"]:
            if s["status"] == "skipped":
                continue
            lines.append(f"| {label} | {s['stage']} ({s['status']}) | {s['seconds']} | "
                         f"{s['polled_peak_rss_mib']} | {s['recorded_peak_rss_mib']} |")
        lines.append(f"| {label} | **whole build** (exit {r['exit_status']}) | "
                     f"{sum(s['seconds'] for s in r['stages']):.1f} | {r['polled_peak_rss_mib']} "
                     f"(kernel peak {r['child_max_rss_mib']}) | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="MODEL:HxW:PRECISION (repeatable); "
                        "default: R18 and R50 at 512x1024 and R50 at 1024x2048, INT8 and FP16")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_CASES)}")
    parser.add_argument("--calib-size", type=int, default=8, help="calibration images (default 8)")
    parser.add_argument("--val-size", type=int, default=4, help="validation images (default 4)")
    parser.add_argument("--poll", type=float, default=0.1, help="RSS polling period in s (default 0.1)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the builds go (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/build_cost.json"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child[0]), Path(args.child[1]))
        return 0

    from edgeseg.bench import machine_info

    cases = [_parse_case(c) for c in (args.case or (QUICK_CASES if args.quick else DEFAULT_CASES))]
    options = {"calib_data": "synthetic::calib", "calib_size": args.calib_size, "val_size": args.val_size,
               "max_miou_drop": 100.0, "min_agreement": 0.0}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgeseg-bench-build-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine_info(), "options": options, "results": []}
    for case in cases:
        print(f"building {case['model']} {case['input_size']} {case['precision']} ...", flush=True)
        result = run_case(case, options, workdir, args.poll)
        report["results"].append(result)
        print(_table([result]), flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")  # after each case: partial runs count
    print(_table(report["results"]))
    return 0 if all(r["exit_status"] == 0 for r in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
