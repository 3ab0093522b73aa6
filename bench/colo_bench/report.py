"""Results to words and pictures: the Markdown tables, the latency plot, README's Performance section."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from ansible_collections.colo.ft.plugins.module_utils.colo.checkpoint_causes import CAUSES

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PLOT = "failover-latency.png"
MODE_NAMES = {"agent": "agent (primary lost)", "agent_secondary": "agent (secondary lost)",
              "playbook": "failover.yml", "direct": "runtime called directly"}


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = ""
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as f:
        mem_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    try:
        distro = "Debian " + Path("/etc/debian_version").read_text().strip()
    except OSError:
        distro = platform.platform()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
            "os": distro, "kernel": platform.release()}


def _num(v, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{v:.0f}"
    return str(v)


def _s(summary: dict, key: str = "median") -> str:
    return f"{_num(summary[key])} s" if summary.get(key) is not None else "–"


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def failover_table(res: dict) -> list[str]:
    out = [f"**Failover outage**: HTTP client at {_num(res['rate'])} req/s (new connection each) plus ledger "
           "writes; a host is power-cut (the primary's, or the secondary's where said); outage = crash to the first "
           "answer to a request sent after it. agent: the colo.ft agents alone; the others with the agents paused.",
           "",
           _row("failover path", "runs", "outage median", "outage max", "ledger write gap median",
                "failover step median", "acked records lost", "idle connection kept"),
           _row(*["---"] * 8)]
    for mode, s in res["summary"].items():
        out.append(_row(MODE_NAMES[mode], s["runs"], _s(s["outage_s"]), _s(s["outage_s"], "max"),
                        _s(s["ledger_gap_s"]), _s(s["failover_step_s"]), s["lost_records"],
                        f"{s['held_connections_ok']}/{s['runs']}"))
    return out


def cost_table(res: dict) -> list[str]:
    colo, plain, r = res["colo"], res["unprotected"], res["colo_over_unprotected"]
    clear = res.get("colo_cleartext")  # results from before TLS have no cleartext leg
    head = ["", "unprotected", "COLO (TLS)", "COLO / unprotected"]
    if clear:
        head += ["COLO cleartext", "cleartext / unprotected"]
    out = [f"**Cost of protection**: the same guest on the same host, under COLO (checkpoint delay "
           f"{res['checkpoint_delay_ms']} ms) with TLS on every COLO channel (the default), in cleartext "
           f"(colo_tls=false) and unprotected, {_num(colo['http_c1']['seconds'], 0)} s each.", "",
           _row(*head), _row("---", *["---:"] * (len(head) - 1))]

    def row(label: str, section: str, k: str, unit: str, rkey: str) -> str:
        cells = [label, f"{_num(plain[section][k])}{unit}", f"{_num(colo[section][k])}{unit}", _num(r[rkey])]
        if clear:
            cells += [f"{_num(clear[section][k])}{unit}", _num(res["cleartext_over_unprotected"][rkey])]
        return _row(*cells)

    for c in (1, 8):
        key = f"http_c{c}"
        for label, k, unit in (("HTTP requests/s", "req_per_s", ""), ("HTTP latency p50", "latency_p50_ms", " ms"),
                               ("HTTP latency p99", "latency_p99_ms", " ms")):
            out.append(row(f"{label}, {c} client{'s' if c > 1 else ''}", key, k, unit, f"{key}_{k}"))
    for label, k, unit in (("durable ledger writes/s, 1 connection", "writes_per_s", ""),
                           ("ledger write latency p50", "latency_p50_ms", " ms"),
                           ("ledger write latency p99", "latency_p99_ms", " ms")):
        out.append(row(label, "ledger", k, unit, f"ledger_{k}"))
    if clear:
        t, c = colo["idle_checkpoints"], clear["idle_checkpoints"]
        out += ["", f"Idle checkpoint pause p50 / p99: TLS {_num(t['pause_p50_ms'], 0)} / "
                    f"{_num(t['pause_p99_ms'], 0)} ms, cleartext {_num(c['pause_p50_ms'], 0)} / "
                    f"{_num(c['pause_p99_ms'], 0)} ms ({t['checkpoints']} and {c['checkpoints']} checkpoints)."]
    return out


def checkpoints_table(res: dict) -> list[str]:
    out = ["**Checkpoints** on the primary (a checkpoint is one guest pause, STOP to RESUME); load = "
           "closed-loop HTTP clients.", "",
           _row("checkpoint delay", "idle: checkpoints/s", "idle: pause p50 / p99", "load: checkpoints/s",
                "load: pause p50 / p99", "load: HTTP req/s"),
           _row("---:", "---:", "---:", "---:", "---:", "---:")]
    for row in res["rows"]:
        i, ld = row["idle"], row["load"]
        out.append(_row(f"{row['delay_ms']} ms", _num(i["checkpoints_per_second"]),
                        f"{_num(i['pause_p50_ms'], 0)} / {_num(i['pause_p99_ms'], 0)} ms",
                        _num(ld["checkpoints_per_second"]),
                        f"{_num(ld['pause_p50_ms'], 0)} / {_num(ld['pause_p99_ms'], 0)} ms",
                        f"{_num(ld['load']['req_per_s'])} ({ld['load']['concurrency']} clients)"))
    return out + [""] + causes_table(res)


def causes_table(res: dict) -> list[str]:
    """Each window's checkpoints by cause, and the frames that differed (colo.ft.info checkpoint_causes)."""
    out = ["**Why the primary checkpoints**: periodic = the checkpoint delay's timer; the others are forced by "
           "colo-compare (tcp/udp/icmp/other: a packet unlike the secondary's; compare_timeout: a packet with no "
           "twin in time). Differing frames: protocol and frame size of each difference found.", "",
           _row("checkpoint delay", "window", *CAUSES, "differing frames"),
           _row("---:", "---", *("---:" for _c in CAUSES), "---")]
    for row in res["rows"]:
        for window in ("idle", "load"):
            got = row[window].get("causes") or {}
            counts = got.get("checkpoints", {})
            most = sorted(got.get("differing_frames", {}).items(), key=lambda kv: -kv[1])[:4]
            frames = ", ".join(f"{k}: {n}" for k, n in most)
            out.append(_row(f"{row['delay_ms']} ms", window, *(str(counts.get(c, "-")) for c in CAUSES),
                            frames or "-"))
    return out


def deploy_table(res: dict) -> list[str]:
    def changed(d: dict) -> str:
        return ", ".join(f"{h} {n}" for h, n in sorted(d.items()))
    return ["**Deploy**", "", _row("step", "wall time", "changed"), _row("---", "---:", "---"),
            _row("lab hosts up (bare)", f"{_num(res['lab_up_s'], 1)} s", ""),
            _row("site.yml from bare hosts to a protected guest", f"{_num(res['site_bare_s'], 1)} s",
                 changed(res["site_bare_changed"])),
            _row("site.yml again", f"{_num(res['site_rerun_s'], 1)} s", changed(res["site_rerun_changed"]))]


def soak_table(res: dict) -> list[str]:
    cyc = res["cycles"]
    return [f"**Soak**: {len(cyc)} failover + re-protect cycles in a row (lost side alternating primary/secondary, "
            "the colo.ft agents fail over and re-protect, nobody acting), ledger writes all along.", "",
            _row("cycles", "acknowledged records", "lost", "connections that survived", "cycle median / max",
                 "ledger write gap median / max"),
            _row(*["---:"] * 6),
            _row(len(cyc), res["acked_records"], res["lost_records"],
                 f"{res['connections_survived']}/{res['connections']}",
                 f"{_s(res['cycle_s'])} / {_s(res['cycle_s'], 'max')}",
                 f"{_s(res['ledger_gap_s'])} / {_s(res['ledger_gap_s'], 'max')}")]


def steady_table(res: dict) -> list[str]:
    cp, http, led = res["checkpoint_sample"] or {}, res["http"] or {}, res["ledger"]
    pauses = f"{_num(cp.get('pause_p50_ms'), 0)} / {_num(cp.get('pause_p99_ms'), 0)} ms" if cp else "–"
    return [f"**Steady state**: {_num(res['duration_s'], 0)} s under checkpoint load - "
            f"{_num(http.get('concurrency'))} closed-loop HTTP clients (new connection each) plus ledger writes on "
            f"one connection, checkpoint delay {_num(res['checkpoint_delay_ms'])} ms - with the colo.ft agents "
            "watching and nothing failing. A false failover is a failover log entry written on either host meanwhile.",
            "",
            _row("false failovers", "same pair and QEMUs after", "checkpoints (per s)", "pause p50 / p99",
                 "HTTP req/s", "HTTP errors", "acknowledged records", "lost", "longest write gap"),
            _row(*["---:"] * 9),
            _row(len(res["false_failovers"]), "yes" if res["pair_unchanged"] else "**no**",
                 f"{res['checkpoints']} ({_num(cp.get('checkpoints_per_second'))})", pauses,
                 _num(res["req_per_s"]), _num(http.get("errors")), led["acked"], led["lost"],
                 f"{_num(led['longest_gap_s'])} s")]


TABLES = {"failover": failover_table, "steady": steady_table, "cost": cost_table, "checkpoints": checkpoints_table,
          "deploy": deploy_table, "soak": soak_table}


def _provenance(results: dict[str, dict], run: dict) -> str:
    """The commit the numbers come from; per section when `--only` reran some of them later."""
    by_commit: dict[str, list[str]] = {}
    for name in TABLES:
        if name in results:
            commit = run.get("sections", {}).get(name, {}).get("commit", run.get("commit", "?"))
            by_commit.setdefault(commit, []).append(name)
    if len(by_commit) <= 1:
        return f"commit {run.get('commit', '?')}, {_num(run['wall_s'] / 60, 0)} min"
    return "; ".join(f"{', '.join(names)} at commit {commit}" for commit, names in by_commit.items())


def render(results: dict[str, dict], run: dict) -> str:
    m = run["machine"]
    lab = run.get("lab", {})
    lines = [f"Measured {run['finished'][:10]} with `bench/run{' --quick' if run.get('quick') else ''}` "
             f"({_provenance(results, run)}): {m['cpu']}, {m['cores']} cores, "
             f"{_num(m['memory_gib'], 0)} GiB, {m['os']}, kernel {m['kernel']}; lab hosts Debian 13 with QEMU "
             f"{lab.get('qemu_version', '?')}, guest under TCG ({lab.get('guest', 'lab test guest')}).", ""]
    for name, table in TABLES.items():
        if name in results:
            lines += table(results[name]) + [""]
    if "failover" in results:
        lines += [f"![client latency across a failover]({PLOT})", ""]
    return "\n".join(lines)


def median_run(runs: list[dict], mode: str) -> dict | None:
    mine = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["outage_s"])
    return mine[(len(mine) - 1) // 2] if mine else None


def plot(failover: dict, path: Path) -> None:
    """Client latency over time around the crash, the median run of each failover path."""
    import matplotlib  # noqa: PLC0415 (heavy; only the plot needs it)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    picked = [(m, median_run(failover["runs"], m)) for m in MODE_NAMES]
    picked = [(m, r) for m, r in picked if r]
    fig, axes = plt.subplots(len(picked), 1, figsize=(9, 3.2 * len(picked)), sharex=True, squeeze=False)
    right = max(r["outage_s"] for _m, r in picked) + 5
    for ax, (mode, r) in zip(axes[:, 0], picked):
        ok = [(t, ms) for t, ms in r["timeline"] if ms is not None and -3 <= t <= right]
        failed = [t for t, ms in r["timeline"] if ms is None and -3 <= t <= right]
        ax.scatter([t for t, _ms in ok], [ms for _t, ms in ok], s=6, label="answered (latency)")
        top = max([ms for _t, ms in ok] + [1000]) * 1.5
        if failed:
            ax.scatter(failed, [top] * len(failed), s=10, marker="x", color="red", label="no answer")
        ax.axvline(0, color="black", linestyle="--", linewidth=1, label="host power-cut")
        ax.axvline(r["outage_s"], color="green", linestyle=":", linewidth=1,
                   label=f"first answer after the crash: {r['outage_s']:.2f} s")
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{MODE_NAMES[mode]} ({r['dead']} crashed, {r['survivor']} took over)")
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("request sent at (s after the crash)")
    axes[-1, 0].set_xlim(-3, right)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_section(summary: str) -> str:
    """The summary as README's Performance section. README ships in the built collection and bench/results/ does
    not, so README names the plot instead of showing it (an image link would break for a user of the tarball)."""
    return summary.replace(f"![client latency across a failover]({PLOT})",
                           f"The client latency across a failover (the median run of each path) is plotted in "
                           f"`bench/results/{PLOT}` (in the source repository).")


def update_readme(text: str, section: str) -> str:
    """Put `section` between README's bench markers; ValueError when they are missing."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    return pattern.sub(lambda _m: f"{BEGIN}\n{section.strip()}\n{END}", text, count=1)
