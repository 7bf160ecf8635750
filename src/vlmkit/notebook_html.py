"""HTML tables for Jupyter and Colab: what the API's results show as a cell's last expression.

`CheckReport`, `Recommendation`, `CaptionRecord`, `RunSummary` and the list `caption` returns
(`Captions`) have a `_repr_html_` that calls one function here. Standard library only (no torch, no rich), so
`check` and `recommend` stay light in a notebook too.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from vlmkit.units import gib

if TYPE_CHECKING:
    from vlmkit.checking import CheckReport
    from vlmkit.planner import Candidate, Recommendation
    from vlmkit.records import CaptionRecord, RunSummary

STATUS_COLOURS = {"ok": "#1a7f37", "pending": "#9a6700", "offline": "#9a6700"}  # the rest: red
RED = "#cf222e"
CANDIDATE_ROWS = 14


def check_report_html(report: CheckReport) -> str:
    t, gpus = report.token, report.gpus
    token = f"{_e(t.masked)}: {_e(t.detail)}" if t.present else _e(t.detail)  # masked: never the whole token
    if gpus.devices:
        gpu = "; ".join(f"{_e(d.name)} ({gib(d.total_bytes)}, {gib(d.free_bytes)} free)" for d in gpus.devices)
    else:
        gpu = f"none: {_e(gpus.reason)}"
    env = report.environment
    versions = f"Python {_e(env.python)}, torch {_e(env.torch or 'not installed')}, " \
               f"transformers {_e(env.transformers or 'not installed')}, av {_e(env.av or 'not installed')}"
    rows = [[_e(m.key), _e(m.kind), _e(m.repo), _status(m.status.value),
             _link(m.url, "request access") if m.url and m.status.value != "ok" else "",
             "yes" if m.cached else "", _e(m.detail)] for m in report.models]
    ok = sum(m.status.value == "ok" for m in report.models)
    return (_lines([("Token", token), ("Packages", versions), ("GPU", gpu)])
            + _table(["model", "kind", "repo", "status", "approval", "cached", "detail"], rows)
            + f"<p><b>{ok} of {len(report.models)} models can be downloaded.</b></p>")


def recommendation_html(plan: Recommendation) -> str:
    gpu = plan.gpu
    where = "no GPU: planning for the CPU" if gpu.source == "cpu" else \
        f"{_e(gpu.name)} ({gib(gpu.vram_bytes)}, {gib(gpu.free_bytes)} usable; from {_e(gpu.source)})"
    lines = [("GPU", where), ("Workload", f"{_e(plan.dtype)}, {plan.frames} frames, "
                                          f"{plan.max_new_tokens} new tokens")]
    for title, c in (("Recommended", plan.choice), ("End-to-end VLM", plan.vlm_choice)):
        if c is not None:
            lines.append((title, f"<b>{_e(c.label)}</b>: {_fits(c)}, {gib(c.estimate.total_bytes)}; "
                                 f"largest frame count <b>{c.max_frames}</b>"))
    lines.append(("Why", ("nothing fits: " if plan.choice is None else "") + _e(plan.reason)))  # as the CLI says
    lines += [("Warning", _e(w)) for w in plan.warnings]
    rows = [[_e(c.label) + (" (tier)" if c.tier else ""), gib(c.estimate.total_bytes), _fits(c), str(c.max_frames)]
            for c in plan.candidates[:CANDIDATE_ROWS]]
    more = len(plan.candidates) - CANDIDATE_ROWS
    return (_lines(lines) + _table(["candidate", "estimate", "fits", "max frames"], rows)
            + (f"<p>… and {more} more candidates</p>" if more > 0 else ""))


def captions_html(records: list[CaptionRecord]) -> str:
    rows = [[_e(r.video), _status(r.status.value), _e(r.caption if r.ok else r.error), str(len(r.timestamps)),
             str(r.new_tokens), f"{r.elapsed_seconds:.1f}"] for r in records]
    ok = sum(r.ok for r in records)
    seconds = sum(r.elapsed_seconds for r in records)
    return (_table(["video", "status", "caption", "frames", "new tokens", "seconds"], rows)
            + f"<p><b>Captioned {ok}, failed {len(records) - ok} in {seconds:.1f} s.</b></p>")


def run_summary_html(summary: RunSummary) -> str:
    earlier = f" ({summary.failed_before} of them failed earlier: retry_errors=True retries them)" \
        if summary.failed_before else ""
    lines = [f"<b>Captioned {summary.captioned}, skipped {summary.skipped}{earlier}, failed {summary.failed} "
             f"in {summary.elapsed_seconds:.1f} s ({summary.videos_per_minute:.1f} videos/min)</b>"]
    if summary.retried_oom:
        lines.append(f"{summary.retried_oom} video(s) ran out of GPU memory and were retried with half the frames")
    if summary.interrupted:
        lines.append("Interrupted: run again with the same output to resume.")
    return "".join(f"<p>{line}</p>" for line in lines)


def _fits(c: Candidate) -> str:
    if c.fits:
        return _coloured("fits", STATUS_COLOURS["ok"])
    return _coloured("does not fit" + ("" if c.estimate.within_context else " (context)"), RED)


def _status(value: str) -> str:
    return _coloured(value, STATUS_COLOURS.get(value, RED))


def _coloured(text: str, colour: str) -> str:
    return f'<span style="color:{colour};font-weight:bold">{_e(text)}</span>'


def _link(url: str, text: str) -> str:
    return f'<a href="{_e(url)}" target="_blank">{_e(text)}</a>'


def _lines(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<div><b>{_e(name)}</b>&nbsp; {value}</div>" for name, value in pairs)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th style='text-align:left'>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _e(value: object) -> str:
    return escape("" if value is None else str(value))
