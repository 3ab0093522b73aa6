"""bench/run: measure the lab, write bench/results/ (JSON per section, summary.md, the latency plot)."""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from colo_lab.config import REPO
from colo_lab.testing import lab_cmd, vm_info

from colo_bench import report
from colo_bench.settings import FULL, QUICK

# In this order: deploy leaves a protected pair from bare hosts; the failover sections come last.
SECTIONS = ("deploy", "cost", "checkpoints", "steady", "failover", "soak")
DEFAULT_OUT = REPO / "bench/results"


def _write(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n" if not isinstance(data, str) else data)
    tmp.replace(path)


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or "?"


def _lab_facts() -> dict:
    for vms in vm_info().values():
        if vms and "guest0" in vms and vms["guest0"].get("qemu_version"):
            return {"qemu_version": vms["guest0"]["qemu_version"]}
    return {}


def _load_existing(out: Path) -> dict[str, dict]:
    """Results of sections not rerun now (--only) stay in the report."""
    found = {}
    for name in SECTIONS:
        path = out / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def _earlier_sections(out: Path, rerun: list[str]) -> dict[str, dict]:
    """run.json's entries of the sections --only does not rerun, each with the commit it was measured at."""
    path = out / "run.json"
    if not path.exists():
        return {}
    before = json.loads(path.read_text())
    return {name: {"commit": before.get("commit", "?"), **entry}
            for name, entry in before.get("sections", {}).items() if name not in rerun}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    p.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                   help=f"sections to run, of: {' '.join(SECTIONS)} (default: all)")
    p.add_argument("--quick", action="store_true", help="a short smoke run: 1 run per failover mode, 2 soak "
                   "cycles, 5 s windows, 30 s steady (numbers not for publishing)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory (default: bench/results)")
    p.add_argument("--readme", choices=("auto", "yes", "no"), default="auto",
                   help="update README.md's Performance section (auto: for a full run into bench/results)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("the lab needs root")
    settings = QUICK if args.quick else FULL
    wanted = args.only or list(SECTIONS)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = _load_existing(out) if args.only else {}
    earlier = _earlier_sections(out, wanted) if args.only else {}
    lab_cmd("build")
    started = time.monotonic()
    run = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "quick": args.quick, "settings": settings.to_dict(), "commit": _commit(), "machine": report.machine(),
           "sections": earlier}
    failed = []
    for name in wanted:
        print(f"bench: {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            results[name] = importlib.import_module(f"colo_bench.sections.{name}").run(settings)
        except Exception:  # one section failing must not lose the others' results
            traceback.print_exc()
            failed.append(name)
            run["sections"][name] = {"wall_s": round(time.monotonic() - t0, 1), "ok": False, "commit": run["commit"]}
            continue
        run["sections"][name] = {"wall_s": round(time.monotonic() - t0, 1), "ok": True, "commit": run["commit"]}
        _write(out / f"{name}.json", results[name])
        print(f"bench: {name} done in {time.monotonic() - t0:.0f} s", flush=True)
    run["lab"] = _lab_facts()
    run["wall_s"] = round(time.monotonic() - started, 1)
    run["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    _write(out / "run.json", run)
    summary = report.render(results, run)
    _write(out / "summary.md", summary + "\n")
    if "failover" in results:
        report.plot(results["failover"], out / report.PLOT)
    full_run = out == DEFAULT_OUT and not (args.quick or failed or args.only)
    readme = args.readme == "yes" or (args.readme == "auto" and full_run)
    if readme:
        path = REPO / "README.md"
        text = report.update_readme(path.read_text(), report.readme_section(summary))
        _write(path, text)
    print(summary)
    print(f"bench: results in {out}" + (" and README.md" if readme else ""), flush=True)
    if failed:
        print(f"bench: FAILED sections: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0
