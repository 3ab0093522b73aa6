"""Pure logic of bench/: outage from samples, summaries, the tables and README's block."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bench"))

from colo_bench import report, stats  # noqa: E402
from colo_bench.http import Sample, first_answer_after  # noqa: E402
from colo_bench.sections.steady import new_entries  # noqa: E402
from colo_bench.settings import FULL, QUICK  # noqa: E402


def test_outage_is_first_answer_to_a_request_sent_after_the_crash():
    samples = [
        Sample(9.0, 10.5),            # sent before the crash, answered late: not a sign of recovery
        Sample(10.1, None, "reset"),  # failed
        Sample(10.2, 14.0),           # SYN retransmitted, answered after the takeover
        Sample(13.0, 13.4),           # the first answer after the crash
    ]
    assert first_answer_after(samples, 10.0) == pytest.approx(3.4)
    assert first_answer_after(samples[:2], 10.0) is None


def test_summary_and_ratio():
    s = stats.summary([3.0, 1.0, 2.0, 10.0])
    assert s == {"n": 4, "median": 2.5, "p99": 10.0, "min": 1.0, "max": 10.0}
    assert stats.summary([])["median"] is None
    assert stats.ratio(50.0, 100.0) == 0.5
    assert stats.ratio(1.0, 0) is None and stats.ratio(None, 2.0) is None


def test_sample_windows_cover_enough_checkpoints():
    assert FULL.sample_seconds(500) == FULL.window_s
    assert FULL.sample_seconds(5000) == 50.0  # 10 checkpoints at 5 s
    assert QUICK.runs == 1 and QUICK.cycles == 2


def test_full_run_measures_what_issue_11_asks():
    # failover "10 runs or more each", 50 unattended cycles, a 10-minute run without a false failover
    assert FULL.runs >= 10 and FULL.cycles >= 50 and FULL.steady_s >= 600 and FULL.cleartext_leg


def test_false_failovers_are_new_log_entries_inside_the_window():
    old = {"at": 100.0, "action": "took_over", "host": "colo-b"}
    fenced = {"at": 205.0, "action": "fenced", "host": "colo-a"}
    took_over = {"at": 206.0, "action": "took_over", "host": "colo-b"}
    late = {"at": 400.0, "action": "reprotected", "host": "colo-b"}
    before = {"colo-a": [], "colo-b": [old]}
    after = {"colo-a": [fenced], "colo-b": [old, took_over, late]}
    assert new_entries(before, after, 200.0, 300.0) == [fenced, took_over]
    assert new_entries(before, before, 0.0, 1e10) == []
    # a log that was there before but unreadable then (host down) still counts only inside the window
    assert new_entries({}, {"colo-b": [old, took_over]}, 200.0, 300.0) == [took_over]


def test_steady_table():
    res = {"duration_s": 600.2, "checkpoint_delay_ms": 2000, "false_failovers": [], "pair_unchanged": True,
           "checkpoints": 3500, "checkpoint_sample": {"checkpoints_per_second": 5.83, "pause_p50_ms": 49.1,
                                                      "pause_p99_ms": 66.0},
           "http": {"concurrency": 8, "req_per_s": 55.5, "errors": 0}, "req_per_s": 55.5,
           "ledger": {"acked": 9000, "lost": 0, "errors": [], "longest_gap_s": 0.42}}
    text = "\n".join(report.steady_table(res))
    assert "**Steady state**: 600 s under checkpoint load - 8 closed-loop HTTP clients" in text
    assert "checkpoint delay 2000 ms" in text
    assert "| 0 | yes | 3500 (5.83) | 49 / 66 ms | 55.5 | 0 | 9000 | 0 | 0.42 s |" in text
    # the primary's sample failed (its QEMU went away): the rest is still shown
    res.update(checkpoint_sample=None, checkpoints=0, http=None, req_per_s=None, pair_unchanged=False,
               false_failovers=[{"action": "took_over"}])
    assert "| 1 | **no** | 0 (–) | – | – | – | 9000 | 0 | 0.42 s |" in "\n".join(report.steady_table(res))


def _results() -> tuple[dict, dict]:
    timeline = [[-0.5, 8.0], [0.1, None], [0.2, 9000.0], [0.3, 7.0]]
    runs = [
        {"mode": "playbook", "dead": "colo-a", "survivor": "colo-b", "outage_s": o, "timeline": timeline}
        for o in (9.0, 11.0, 10.0)
    ] + [{"mode": "direct", "dead": "colo-b", "survivor": "colo-a", "outage_s": 0.3, "timeline": timeline}]
    s = {"n": 1, "median": 9.5, "p99": 9.5, "min": 9.5, "max": 12.25}
    failover = {"rate": 20.0, "runs": runs, "summary": {
        "playbook": {"runs": 3, "outage_s": s, "ledger_gap_s": s, "failover_step_s": s, "lost_records": 0,
                     "held_connections_ok": 3},
        "direct": {"runs": 1, "outage_s": s, "ledger_gap_s": s, "failover_step_s": s, "lost_records": 0,
                   "held_connections_ok": 1}}}
    deploy = {"lab_up_s": 5.1, "site_bare_s": 44.0, "site_bare_changed": {"colo-b": 10, "colo-a": 8},
              "site_rerun_s": 22.6, "site_rerun_changed": {"colo-a": 0, "colo-b": 0}}
    run = {"finished": "2026-11-28T06:00:00+00:00", "quick": False, "commit": "abc1234", "wall_s": 1800.0,
           "machine": {"cpu": "CPU X", "cores": 2, "memory_gib": 24.0, "os": "Debian 12.11", "kernel": "6.1"},
           "lab": {"qemu_version": "11.1.3"}}
    return {"failover": failover, "deploy": deploy}, run


def test_render_tables():
    results, run = _results()
    text = report.render(results, run)
    assert text.startswith("Measured 2026-11-28 with `bench/run` (commit abc1234, 30 min): CPU X, 2 cores")
    assert "| failover.yml | 3 | 9.5 s | 12.25 s | 9.5 s | 9.5 s | 0 | 3/3 |" in text
    assert "| site.yml from bare hosts to a protected guest | 44 s | colo-a 8, colo-b 10 |" in text
    assert "Cost of protection" not in text  # a section that did not run has no table
    assert f"]({report.PLOT})" in text


def test_render_names_the_commit_of_each_section_after_a_partial_rerun():
    results, run = _results()
    run["sections"] = {"deploy": {"commit": "abc1234"}, "failover": {"commit": "def5678"}}
    text = report.render(results, run)
    assert text.startswith("Measured 2026-11-28 with `bench/run` (failover at commit def5678; deploy at commit "
                           "abc1234): CPU X"), text.splitlines()[0]


def test_median_run_picks_the_middle_outage():
    results, _run = _results()
    assert report.median_run(results["failover"]["runs"], "playbook")["outage_s"] == 10.0
    assert report.median_run(results["failover"]["runs"], "direct")["outage_s"] == 0.3
    assert report.median_run([], "direct") is None


def test_plot_writes_a_png(tmp_path):
    results, _run = _results()
    path = tmp_path / report.PLOT
    report.plot(results["failover"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_block_is_replaced_and_only_it():
    text = f"# T\nbefore\n{report.BEGIN}\nold\ntable\n{report.END}\nafter\n"
    new = report.update_readme(text, "new table\n")
    assert new == f"# T\nbefore\n{report.BEGIN}\nnew table\n{report.END}\nafter\n"
    assert report.update_readme(new, "new table") == new
    with pytest.raises(ValueError, match="bench:begin"):
        report.update_readme("# no markers\n", "x")


def test_the_readme_has_the_block():
    report.update_readme((REPO / "README.md").read_text(), "x")


def test_the_readme_section_names_the_plot_without_linking_it():
    # README ships in the built collection, bench/results/ does not: no image link into it.
    results, run = _results()
    summary = report.render(results, run)
    assert f"]({report.PLOT})" in summary  # summary.md sits beside the plot
    section = report.readme_section(summary)
    assert "](" not in section and f"`bench/results/{report.PLOT}`" in section


def test_cost_table_with_tls_and_cleartext_legs():
    leg = {"http_c1": {"seconds": 10.0, "req_per_s": 10.0, "latency_p50_ms": 50.0, "latency_p99_ms": 90.0},
           "http_c8": {"seconds": 10.0, "req_per_s": 40.0, "latency_p50_ms": 150.0, "latency_p99_ms": 300.0},
           "ledger": {"writes_per_s": 20.0, "latency_p50_ms": 40.0, "latency_p99_ms": 80.0}}
    pauses = {"checkpoints": 5, "pause_p50_ms": 48.0, "pause_p99_ms": 61.0}
    colo = dict(leg, idle_checkpoints=pauses)
    clear = dict(leg, idle_checkpoints=dict(pauses, pause_p50_ms=45.0))
    plain = {k: {kk: (v * 2 if isinstance(v, float) else v) for kk, v in d.items()} for k, d in leg.items()}
    metrics = ("req_per_s", "latency_p50_ms", "latency_p99_ms")
    ratio = {f"{k}_{m}": 0.5 for k in ("http_c1", "http_c8") for m in metrics}
    ratio.update({f"ledger_{m}": 0.5 for m in ("writes_per_s", "latency_p50_ms", "latency_p99_ms")})
    res = {"checkpoint_delay_ms": 2000, "colo": colo, "colo_cleartext": clear, "unprotected": plain,
           "colo_over_unprotected": ratio, "cleartext_over_unprotected": ratio, "tls_over_cleartext": ratio}
    text = "\n".join(report.cost_table(res))
    assert "| HTTP requests/s, 8 clients | 80 | 40 | 0.5 | 40 | 0.5 |" in text
    assert "Idle checkpoint pause p50 / p99: TLS 48 / 61 ms, cleartext 45 / 61 ms" in text
    del res["colo_cleartext"]  # results measured before the cleartext leg existed
    assert "| HTTP requests/s, 8 clients | 80 | 40 | 0.5 |" in "\n".join(report.cost_table(res))


def test_checkpoints_table_shows_each_windows_causes():
    counts = {"periodic": 3, "tcp": 40, "udp": 0, "icmp": 1, "other": 0, "compare_timeout": 2}
    causes = {"checkpoints": counts, "differing_frames": {"tcp 73": 9, "tcp 270": 50, "icmp": 1},
              "dropped_packets": 0}
    window = {"checkpoints_per_second": 1.5, "pause_p50_ms": 48.0, "pause_p99_ms": 60.0}
    idle = {"checkpoints": dict(counts, tcp=0), "differing_frames": {}, "dropped_packets": 0}
    res = {"rows": [{"delay_ms": 2000, "idle": dict(window, causes=idle),
                     "load": dict(window, causes=causes, load={"req_per_s": 20.0, "concurrency": 8})}]}
    text = "\n".join(report.checkpoints_table(res))
    assert "| 2000 ms | idle | 3 | 0 | 0 | 1 | 0 | 2 | - |" in text
    assert "| 2000 ms | load | 3 | 40 | 0 | 1 | 0 | 2 | tcp 270: 50, tcp 73: 9, icmp: 1 |" in text
    del res["rows"][0]["idle"]["causes"]  # results of a run before causes were counted
    assert "| 2000 ms | idle | - | - | - | - | - | - | - |" in "\n".join(report.checkpoints_table(res))
