"""Report: what the session tells the user, from the header to the summary."""

from __future__ import annotations

from typing import Any

from pytest_programbench.engine.fleet import per_engine_lines
from pytest_programbench.model import DIFFICULTIES, ERROR, LANGUAGES, NOT_RUN, OUTCOMES, Selection
from pytest_programbench.scoring.integrity import Finding
from pytest_programbench.selection.settings import Settings


def header_lines(settings: Settings, selection: Selection) -> list[str]:
    lines = _selection_lines(settings, selection)
    if settings.submissions_dir:
        lines.append(f"programbench: replaying submissions from {settings.submissions_dir}")
    lines.extend(_scoring_lines(settings))
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


def _scoring_lines(settings: Settings) -> list[str]:
    """How verdicts already in the run directory are treated, and branch settings off their defaults."""
    out = []
    if settings.reference != "readable":
        out.append(
            f"programbench: --pb-reference {settings.reference}: the agent can run ./executable, not read it"
        )
    if settings.force_agent:
        out.append("programbench: --pb-force-agent: agents run again and every instance is scored in full")
    elif settings.force:
        out.append("programbench: --pb-force: every instance is scored again in full; agents are not rerun")
    if settings.gold:
        out.append(
            "programbench: --pb-gold: each task's reference ./executable is scored as it stands in its image "
            "(no agent, no compile); the gold mask goes to gold_mask.json in the run directory"
        )
    if settings.gold_mask:
        out.append(
            f"programbench: --pb-gold-mask {settings.gold_mask}: rows get gold_score beside the official "
            "score, which stays the headline"
        )
    if (settings.branch_workers, settings.branch_retries) != (1, 1):
        out.append(
            f"programbench: {settings.branch_workers} branch worker(s) per instance, "
            f"{settings.branch_retries} branch retr{'y' if settings.branch_retries == 1 else 'ies'}"
        )
    return out


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


def summary_lines(
    rows: list[dict[str, Any]], *, threshold: float = 1.0, integrity: str = "report"
) -> list[str]:
    """The ProgramBench section: a row per item, aggregates, the overall line and the error rule."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: (r["instance_id"], r["attempt"]))
    not_run = [r for r in rows if r["outcome"] == NOT_RUN]
    shown = [r for r in rows if r["outcome"] != NOT_RUN]
    width = max(len(_label(r)) for r in shown or rows)
    with_gold = any(r.get("gold_score") is not None for r in rows)
    score_width = 11 if with_gold else 5  # the official score, then the gold score beside it
    out = [
        f"{'instance':<{width}}  {'lang':<7} {'diff':<7} {'score':>5} "
        + (f"{'gold':>5} " if with_gold else "")
        + f"{'passed':>9}  {'steps':>5} {'cost':>7} {'time':>7}  outcome"
    ]
    for r in shown:
        error = r["outcome"] == ERROR
        passed = "-" if error else f"{r['n_resolved']}/{r['n_tests']}"
        score = "-" if error else f"{r['score']:.2f}"
        if with_gold:
            score += " " + ("-" if r.get("gold_score") is None else f"{r['gold_score']:.2f}").rjust(5)
        steps = "" if r.get("agent_steps") is None else str(r["agent_steps"])
        cost = "" if r.get("agent_cost") is None else f"${r['agent_cost']:.2f}"
        seconds = (r.get("agent_seconds") or 0.0) + (r.get("eval_seconds") or 0.0)
        note = r.get("reason") or r.get("error_code") or ""
        resumed = _resume_note(r)
        if resumed:
            note = resumed + (f"; {note}" if note else "")
        if r.get("session"):
            note = f"{SESSION_NOTES[r['session']]}" + (f"; {note}" if note else "")
        out.append(
            f"{_label(r):<{width}}  {r['language']:<7} {r['difficulty']:<7} {score:>{score_width}} "
            f"{passed:>9}  "
            f"{steps:>5} {cost:>7} {_duration(seconds) if seconds else '':>7}  {r['outcome']}"
            + (f"  ({note})" if note else "")
        )
    summary = totals(rows, threshold=threshold, integrity=integrity)
    out.extend(_rerun_lines(shown, threshold))
    out.extend(_integrity_lines(rows, integrity))
    if "per_instance" in summary:  # more than one attempt
        out.extend(_attempt_lines(summary["per_instance"]))
    out.extend(_aggregate_lines(summary))
    line = f"mean score {summary['mean_score']:.3f} over {len(rows)} item(s); " + ", ".join(
        f"{summary[c]} {c}" for c in OUTCOMES if summary[c]
    )
    out.append(line)
    if "mean_gold_score" in summary:
        out.append(
            "gold score (the share of the tests the reference passes here that the submission passes): "
            f"mean {summary['mean_gold_score']:.3f} over the {summary['n_gold_scored']} item(s) the gold "
            "mask knows; the official score above stays the headline"
        )
    out.extend(_coverage_lines(summary, not_run))
    out.extend(per_engine_lines(rows))
    out.extend(_resume_lines(rows, summary))
    errors = [r for r in rows if r["outcome"] == ERROR]
    if errors:
        out.append("errors count as score 0 in the mean (the official rule); their causes:")
        out.extend(f"  {_label(r)}: {r.get('message') or r.get('error_code')}" for r in errors)
    return out


def _rerun_lines(rows: list[dict[str, Any]], threshold: float) -> list[str]:
    """Node ids of this session's items that did not pass, ready to paste back as arguments."""
    failed = [
        r["node_id"]
        for r in rows
        if r.get("node_id") and not r.get("session") and (r["outcome"] == "error" or r["score"] < threshold)
    ]
    if not failed:
        return []
    return [f"did not pass (paste a node id to rerun that item, or use --lf): {_some(tuple(failed), 10)}"]


#: A row's "session" when its verdict is not this session's: where it came from.
SESSION_NOTES = {
    "earlier": "from an earlier session",
    "official": "from an official eval.json",
}


def _coverage_lines(summary: dict[str, Any], not_run: list[dict[str, Any]]) -> list[str]:
    """Which rule the mean uses, what came from earlier sessions, and what has not run."""
    out = ["the mean counts every selected item; errors and items not run count 0 (the leaderboard's rule)"]
    if summary["earlier"] or summary["official"]:
        out.append(
            f"merged from the run directory: {summary['earlier']} verdict(s) of earlier sessions, "
            f"{summary['official']} from official eval.json files"
        )
    if not_run:
        out.append(
            f"{len(not_run)} selected item(s) not run (no verdict yet; rerun with the same --pb-output "
            f"to add them): {_some(tuple(_label(r) for r in not_run), 10)}"
        )
        if summary["n_ran"]:
            ran = summary["n_ran"]
            out.append(f"mean over the {ran} item(s) with a verdict: {summary['mean_score_ran']:.3f}")
    return out


def _integrity_lines(rows: list[dict[str, Any]], integrity: str) -> list[str]:
    """The Integrity section: each flagged instance with its findings, and what they did to the score."""
    flagged = [r for r in rows if r.get("findings")]
    if not flagged:
        return []
    effect = (
        "counted as 0 (--pb-integrity strict)"
        if integrity == "strict"
        else "official scores kept; --pb-integrity strict counts them 0"
    )
    out = [f"Integrity: {len(flagged)} of {len(rows)} item(s) flagged, {effect}:"]
    for r in flagged:
        official = r.get("official_score")
        shown = f"official {official:.2f}" if official is not None else f"score {r['score']:.2f}"
        out.append(f"  {_label(r)} ({shown}):")
        out.extend(f"    {Finding(**f)}" for f in r["findings"])
    return out


def _resume_note(row: dict[str, Any]) -> str:
    if row.get("reused"):
        return "reused" + (f" ({row['rescore_reason']})" if row.get("rescore_reason") else "")
    if row.get("rescored") == "part":
        return "re-scored branches " + ", ".join(row.get("rescored_branches") or [])
    if row.get("rescored") == "full":
        return f"re-scored in full: {row.get('rescore_reason')}"
    return ""


def _resume_lines(rows: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """What became of the verdicts a previous session left: reused, re-scored in part or in full."""
    if not (summary["reused"] or summary["rescored_part"] or summary["rescored_full"]):
        return []
    out = [
        f"verdicts from the run directory: {summary['reused']} reused, {summary['rescored_part']} re-scored "
        f"in part, {summary['rescored_full']} re-scored in full"
    ]
    out.extend(f"  {_label(r)}: {_resume_note(r)}" for r in rows if r.get("rescored"))
    return out


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.1f}s"
    if seconds < 6000:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _attempt_lines(stats: dict[str, dict[str, Any]]) -> list[str]:
    out = ["per instance over attempts:"]
    width = max(len(i) for i in stats)
    for iid, st in sorted(stats.items()):
        out.append(
            f"  {iid:<{width}}  mean {st['mean_score']:.3f} over {st['attempts']}  "
            f"pass@{st['attempts']} {'yes' if st['passed_any'] else 'no'}"
        )
    return out


def per_instance(rows: list[dict[str, Any]], threshold: float) -> dict[str, dict[str, Any]]:
    """Mean score over an instance's attempts and whether any attempt passed (pass@k)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        grouped.setdefault(r["instance_id"], []).append(r)
    return {
        iid: {
            "attempts": len(rs),
            "mean_score": sum(r["score"] for r in rs) / len(rs),
            "passed_any": any(r["outcome"] != ERROR and r["score"] >= threshold for r in rs),
        }
        for iid, rs in grouped.items()
    }


def aggregates(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Per value of ``key`` (language, difficulty): instances, mean score, resolved, almost."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(r)
    return {
        name: {
            "instances": len({r["instance_id"] for r in rs}),
            "items": len(rs),
            "mean_score": sum(r["score"] for r in rs) / len(rs),
            "resolved": sum(r["outcome"] == "resolved" for r in rs),
            "almost": sum(r["outcome"] == "almost" for r in rs),
            "errors": sum(r["outcome"] == ERROR for r in rs),
        }
        for name, rs in sorted(groups.items(), key=lambda kv: _order(key, kv[0]))
    }


def _order(key: str, value: str) -> tuple[int, str]:
    known = LANGUAGES if key == "language" else DIFFICULTIES
    return (known.index(value) if value in known else len(known), value)


def _aggregate_lines(summary: dict[str, Any]) -> list[str]:
    out = []
    for key in ("language", "difficulty"):
        for name, agg in summary[f"by_{key}"].items():
            out.append(
                f"{key} {name:<8} {agg['instances']:>4} instance(s)  mean {agg['mean_score']:.3f}  "
                f"resolved {agg['resolved']}  almost {agg['almost']}"
                + (f"  errors {agg['errors']}" if agg["errors"] else "")
            )
    return out


def totals(
    rows: list[dict[str, Any]], *, threshold: float = 1.0, integrity: str = "report"
) -> dict[str, Any]:
    """Items, mean score (errors count as 0, the official rule), counts per outcome, aggregates.

    Under strict integrity a flagged row already carries score 0 (its official score beside).
    """
    n = len(rows)
    ran = [r for r in rows if r["outcome"] != NOT_RUN]
    stats = per_instance(rows, threshold)
    attempts = max((r["attempt"] for r in rows), default=1)
    summary: dict[str, Any] = {
        "n_items": n,
        "n_instances": len(stats),
        "mean_score": sum(r["score"] for r in rows) / n if n else 0.0,
        "errors_count_as": 0.0,
        "mean_rule": "every selected item counts; errors and items not run count 0",
        "n_ran": len(ran),
        "mean_score_ran": sum(r["score"] for r in ran) / len(ran) if ran else 0.0,
        "earlier": sum(r.get("session") == "earlier" for r in rows),
        "official": sum(r.get("session") == "official" for r in rows),
        **{c: sum(r["outcome"] == c for r in rows) for c in OUTCOMES},
        "reused": sum(bool(r.get("reused")) for r in rows),
        "flagged": sum(bool(r.get("findings")) for r in rows),
        "integrity": integrity,
        "rescored_part": sum(r.get("rescored") == "part" for r in rows),
        "rescored_full": sum(r.get("rescored") == "full" for r in rows),
        "by_language": aggregates(rows, "language"),
        "by_difficulty": aggregates(rows, "difficulty"),
    }
    gold = [float(r["gold_score"]) for r in rows if r.get("gold_score") is not None]
    if gold:
        summary["mean_gold_score"] = sum(gold) / len(gold)
        summary["n_gold_scored"] = len(gold)
    if attempts > 1:
        summary[f"pass@{attempts}"] = sum(s["passed_any"] for s in stats.values()) / len(stats)
        summary["per_instance"] = stats
    return summary


def _label(row: dict[str, Any]) -> str:
    return str(row["instance_id"]) + (f" #{row['attempt']}" if row["attempt"] > 1 else "")
