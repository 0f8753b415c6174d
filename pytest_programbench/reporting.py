"""Report: what the session tells the user, from the header to the summary."""

from __future__ import annotations

from typing import Any

from pytest_programbench.model import Selection
from pytest_programbench.settings import LANGUAGES, Settings


def header_lines(settings: Settings, selection: Selection) -> list[str]:
    lines = _selection_lines(settings, selection)
    if settings.submissions_dir:
        lines.append(f"programbench: replaying submissions from {settings.submissions_dir}")
    if selection.unselected_submissions:
        lines.append(
            f"programbench: {len(selection.unselected_submissions)} submission(s) in the run directory not "
            f"selected: {_some(selection.unselected_submissions)}"
        )
    if selection.unknown_submissions:
        lines.append(
            f"programbench: {len(selection.unknown_submissions)} submission(s) in the run directory are not "
            f"tasks of {selection.source} (see --pb-tasks-dir): {_some(selection.unknown_submissions)}"
        )
    return lines


def _some(ids: tuple[str, ...], limit: int = 20) -> str:
    more = len(ids) - limit
    return ", ".join(ids[:limit]) + (f" (+{more} more)" if more > 0 else "")


def _selection_lines(settings: Settings, selection: Selection) -> list[str]:
    if not selection.instances:
        return [
            f"programbench: no instance matches {settings.describe()} "
            f"(of {selection.available} in {selection.source}); nothing to run"
        ]
    counts = selection.counts_by_language()
    order = [lang for lang in LANGUAGES if lang in counts] + sorted(set(counts) - set(LANGUAGES))
    per_language = ", ".join(f"{lang} {counts[lang]}" for lang in order)
    line = (
        f"programbench: {selection.n_instances} instances ({per_language}) "
        f"of {selection.available} in {selection.source}"
    )
    if settings.attempts > 1:
        line += f", {settings.attempts} attempts each ({len(selection.instances)} items)"
    return [
        line,
        f"programbench: selection {settings.describe()}; image tag {settings.image_tag}; "
        f"pass when score >= {settings.threshold:g}",
    ]


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The ProgramBench section: one row per item, then the totals and the error rule."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: (r["instance_id"], r["attempt"]))
    width = max(len(_label(r)) for r in rows)
    out = [f"{'instance':<{width}}  {'lang':<7} {'score':>5} {'passed':>11}  outcome"]
    for r in rows:
        passed = f"{r['n_resolved']}/{r['n_tests']}" if r["outcome"] != "error" else "-"
        score = f"{r['score']:.2f}" if r["outcome"] != "error" else "-"
        note = r.get("reason") or r.get("error_code") or ""
        out.append(
            f"{_label(r):<{width}}  {r['language']:<7} {score:>5} {passed:>11}  {r['outcome']}"
            + (f"  ({note})" if note else "")
        )
    errors = [r for r in rows if r["outcome"] == "error"]
    summary = totals(rows)
    out.append(
        f"mean score {summary['mean_score']:.3f} over {len(rows)} item(s); "
        + ", ".join(f"{summary[c]} {c}" for c in OUTCOMES if summary[c])
    )
    if errors:
        out.append("errors count as score 0 in the mean (the official rule); their causes:")
        out.extend(f"  {_label(r)}: {r.get('message') or r.get('error_code')}" for r in errors)
    return out


#: Every value of a row's "outcome": the score categories, then harness errors.
OUTCOMES = ("resolved", "almost", "partial", "zero", "error")


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Items, mean score (errors count as 0, the official rule) and a count per outcome."""
    n = len(rows)
    return {
        "n_items": n,
        "mean_score": sum(r["score"] for r in rows) / n if n else 0.0,
        "errors_count_as": 0.0,
        **{c: sum(r["outcome"] == c for r in rows) for c in OUTCOMES},
    }


def _label(row: dict[str, Any]) -> str:
    return str(row["instance_id"]) + (f" #{row['attempt']}" if row["attempt"] > 1 else "")
