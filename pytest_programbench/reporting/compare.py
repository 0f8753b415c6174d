"""Compare: this session's scores against an earlier run's, per instance and on the mean.

The earlier run is a ``--pb-report`` JSON or a run directory (ours, or one ``programbench
eval`` wrote: ``<run>/<id>/<id>.eval.json``), whose eval.json files are scored the way
``programbench info`` scores them. Instances are paired by id; with several attempts an
instance's score is its mean over attempts. The uncertainty of the mean delta is a paired
bootstrap over the paired instances (seeded, so a rerun prints the same interval).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_programbench.model import RESOLVED_THRESHOLD
from pytest_programbench.scoring import detail

if TYPE_CHECKING:
    from pytest_programbench.scoring.gold import Mask

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
SAME_WITHIN = 1e-9
SHOWN = 10  # instances and tests named per list in the terminal


class BaselineInvalid(Exception):
    pass


@dataclass(frozen=True)
class Entry:
    """One instance of a run as a comparison sees it."""

    score: float
    language: str
    difficulty: str
    not_passed: frozenset[str] | None = None  # branch/name; None when the run did not record them
    counted: frozenset[str] | None = None  # every counted test, when known (a run directory)
    gold: float | None = None  # gold_score against a --pb-gold-mask, when known


@dataclass(frozen=True)
class Baseline:
    source: str
    entries: dict[str, Entry]


def load(path: Path, tasks_dir: Path | None = None, mask: Mask | None = None) -> Baseline:
    """A ``--pb-report`` JSON, or a run directory scored from its eval.json files (and, given a gold
    mask, measured against it: a report's rows keep the gold scores they were written with)."""
    if path.is_dir():
        return Baseline(str(path), _from_run_dir(path, tasks_dir, mask))
    try:
        data = json.loads(path.read_text())
        rows = data["instances"]
        if not isinstance(rows, list):
            raise TypeError
        return Baseline(str(path), from_rows(rows))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BaselineInvalid(
            f"--pb-compare {path}: not a --pb-report JSON ({type(exc).__name__}: {exc}); "
            "give the JSON an earlier session wrote with --pb-report, or its run directory"
        ) from None


def from_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Entry]:
    """Report rows -> one entry per instance (mean score over attempts; first attempt's tests)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("outcome") != "not_run":  # no verdict: not a score to compare (it shows as "gone")
            grouped.setdefault(str(r["instance_id"]), []).append(r)
    out = {}
    for iid, rs in grouped.items():
        rs.sort(key=lambda r: r.get("attempt", 1))
        hidden = rs[0].get("hidden_tests")
        golds = [r.get("gold_score") for r in rs]
        out[iid] = Entry(
            gold=_mean([float(g) if isinstance(g, int | float) else None for g in golds]),
            score=sum(float(r["score"]) for r in rs) / len(rs),
            language=str(rs[0].get("language", "")),
            difficulty=str(rs[0].get("difficulty", "")),
            not_passed=frozenset(detail.not_passed(hidden)) if isinstance(hidden, dict) else None,
        )
    return out


def _from_run_dir(run_dir: Path, tasks_dir: Path | None, mask: Mask | None = None) -> dict[str, Entry]:
    """Score every ``<id>/<id>.eval.json`` (and ``attempt-<k>/<id>/...``) as programbench info does."""
    from pytest_programbench.selection.tasks import default_tasks_dir, load_instances

    known = {
        i.instance_id: i
        for i in load_instances(tasks_dir or default_tasks_dir(), image_tag="", skip_fixtures=False)
    }
    scored: dict[str, list[tuple[float, frozenset[str], frozenset[str]]]] = {}
    golds: dict[str, list[float | None]] = {}
    for eval_json in sorted([*run_dir.glob("*/*.eval.json"), *run_dir.glob("attempt-*/*/*.eval.json")]):
        iid = eval_json.name[: -len(".eval.json")]
        if eval_json.parent.name != iid or iid not in known:
            continue
        try:
            results = list(detail.counted(detail.read(eval_json), detail.branches_of(known[iid])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        passed = sum(t["status"] == "passed" for t in results)
        names = frozenset(f"{t.get('branch') or ''}/{t['name']}" for t in results)
        failed = frozenset(f"{t.get('branch') or ''}/{t['name']}" for t in results if t["status"] != "passed")
        scored.setdefault(iid, []).append((passed / len(results) if results else 0.0, failed, names))
        gold = mask.score(iid, results) if mask is not None else None
        golds.setdefault(iid, []).append(gold[0] if gold is not None else None)
    if not scored:
        raise BaselineInvalid(
            f"--pb-compare {run_dir}: no <id>/<id>.eval.json of a known task in this directory; give a run "
            "directory (--pb-output, or programbench eval's) or a --pb-report JSON"
        )
    # Sorted paths put <id>/ before attempt-<k>/: a single run's own file, else attempt 1's, gives the tests.
    return {
        iid: Entry(
            score=sum(s for s, _, _ in runs) / len(runs),
            language=known[iid].language,
            difficulty=known[iid].difficulty,
            not_passed=runs[0][1],
            counted=runs[0][2],
            gold=_mean(golds.get(iid, [None])),
        )
        for iid, runs in scored.items()
    }


@dataclass(frozen=True)
class Comparison:
    source: str
    instances: list[dict[str, Any]]
    mean_then: float
    mean_now: float
    mean_delta: float
    ci: tuple[float, float] | None
    by_language: dict[str, dict[str, float]]
    by_difficulty: dict[str, dict[str, float]]
    resolved_gained: list[str]
    resolved_lost: list[str]
    flips: dict[str, dict[str, list[str]]]
    counts: dict[str, int] = field(default_factory=dict)
    #: The gold scores then and now, over the instances both runs have one of (None: neither has).
    gold: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "paired": self.counts.get("paired", 0),
            "counts": self.counts,
            "mean_then": self.mean_then,
            "mean_now": self.mean_now,
            "mean_delta": self.mean_delta,
            "ci": {
                "low": self.ci[0] if self.ci else None,
                "high": self.ci[1] if self.ci else None,
                "confidence": CONFIDENCE,
                "method": "paired bootstrap over instances (percentile)",
                "resamples": BOOTSTRAP_RESAMPLES,
                "seed": BOOTSTRAP_SEED,
            },
            "by_language": self.by_language,
            "by_difficulty": self.by_difficulty,
            "resolved_gained": self.resolved_gained,
            "resolved_lost": self.resolved_lost,
            "flips": self.flips,
            "gold": self.gold,
            "instances": self.instances,
        }

    def suite_properties(self) -> list[tuple[str, object]]:
        props: list[tuple[str, object]] = [
            ("pb_compare_source", self.source),
            ("pb_compare_paired", self.counts.get("paired", 0)),
            ("pb_compare_mean_then", round(self.mean_then, 6)),
            ("pb_compare_mean_delta", round(self.mean_delta, 6)),
            ("pb_compare_resolved_gained", len(self.resolved_gained)),
            ("pb_compare_resolved_lost", len(self.resolved_lost)),
        ]
        if self.ci is not None:
            props += [
                ("pb_compare_ci_low", round(self.ci[0], 6)),
                ("pb_compare_ci_high", round(self.ci[1], 6)),
            ]
        props += [(f"pb_compare_{k}", v) for k, v in self.counts.items() if k != "paired"]
        if self.gold is not None:
            props += [(f"pb_compare_gold_{k}", round(v, 6)) for k, v in self.gold.items()]
        return props

    def lines(self) -> list[str]:
        c = self.counts
        out = [
            f"against {self.source}: {c['paired']} instance(s) in both, {c['new']} new, {c['gone']} gone",
            f"mean score {self.mean_then:.3f} -> {self.mean_now:.3f} over the instances in both: "
            f"delta {self.mean_delta:+.4f}"
            + (
                f", {CONFIDENCE:.0%} CI [{self.ci[0]:+.4f}, {self.ci[1]:+.4f}] (paired bootstrap over "
                f"instances, {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED})"
                if self.ci
                else ""
            ),
            f"improved {c['improved']}, regressed {c['regressed']}, same {c['same']}; resolved gained "
            f"{len(self.resolved_gained)}{_names(self.resolved_gained)}, lost "
            f"{len(self.resolved_lost)}{_names(self.resolved_lost)}",
        ]
        if self.gold is not None:
            g = self.gold
            out.append(
                f"gold score {g['mean_then']:.3f} -> {g['mean_now']:.3f} over the {g['paired']:.0f} "
                f"instance(s) both measured against the gold mask: delta {g['mean_delta']:+.4f}"
            )
        for key, groups in (("language", self.by_language), ("difficulty", self.by_difficulty)):
            out.extend(
                f"{key} {name:<8} {g['instances']:>4} instance(s)  delta {g['mean_delta']:+.4f}"
                for name, g in groups.items()
            )
        changed = [i for i in self.instances if i["status"] in ("improved", "regressed")]
        for i in changed[:SHOWN]:
            out.append(f"  {i['instance_id']}: {i['then']:.2f} -> {i['now']:.2f} {i['status']}")
        if len(changed) > SHOWN:
            out.append(f"  and {len(changed) - SHOWN} more changed instance(s) (all in the JSON report)")
        if self.flips:
            fixed = sum(len(f["now_pass"]) for f in self.flips.values())
            broke = sum(len(f["now_fail"]) for f in self.flips.values())
            out.append(
                f"hidden tests flipped: {fixed} now pass, {broke} now fail, in {len(self.flips)} instance(s)"
            )
            for iid, f in list(self.flips.items())[:SHOWN]:
                parts = [f"{k.replace('_', ' ')} {_few(f[k])}" for k in ("now_fail", "now_pass") if f[k]]
                out.append(f"  {iid}: " + "; ".join(parts))
        return out


def _names(ids: list[str]) -> str:
    return f" ({_few(ids)})" if ids else ""


def _few(names: list[str], limit: int = 3) -> str:
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


def bootstrap_ci(
    deltas: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Percentile interval of the mean delta, resampling instances with replacement."""
    n = len(deltas)
    if n == 0:
        return None
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(deltas, k=n)) / n for _ in range(resamples))
    tail = (1 - CONFIDENCE) / 2
    return means[int(tail * (resamples - 1))], means[round((1 - tail) * (resamples - 1))]


def _status(then: float, now: float) -> str:
    if now > then + SAME_WITHIN:
        return "improved"
    if now < then - SAME_WITHIN:
        return "regressed"
    return "same"


def _flips(then: Entry, now: Entry) -> dict[str, list[str]] | None:
    if then.not_passed is None or now.not_passed is None:
        return None
    now_fail = sorted(now.not_passed - then.not_passed)
    now_pass = sorted(then.not_passed - now.not_passed)
    if then.counted is not None:  # a test the earlier run did not count has not flipped
        now_fail = [t for t in now_fail if t in then.counted]
    if now.counted is not None:
        now_pass = [t for t in now_pass if t in now.counted]
    return {"now_pass": now_pass, "now_fail": now_fail} if now_pass or now_fail else None


def compare(baseline: Baseline, rows: Sequence[dict[str, Any]]) -> Comparison:
    now = from_rows(rows)
    then = baseline.entries
    instances = []
    deltas: dict[str, float] = {}
    flips: dict[str, dict[str, list[str]]] = {}
    for iid in sorted(set(then) | set(now)):
        a, b = then.get(iid), now.get(iid)
        ref = b or a
        assert ref is not None
        row: dict[str, Any] = {"instance_id": iid, "language": ref.language, "difficulty": ref.difficulty}
        row["then"] = a.score if a else None
        row["now"] = b.score if b else None
        if a is None:
            row["status"] = "new"
        elif b is None:
            row["status"] = "gone"
        else:
            row["status"] = _status(a.score, b.score)
            row["delta"] = deltas[iid] = b.score - a.score
            if a.gold is not None and b.gold is not None:
                row.update(gold_then=a.gold, gold_now=b.gold, gold_delta=b.gold - a.gold)
            flipped = _flips(a, b)
            if flipped:
                flips[iid] = flipped
        instances.append(row)
    paired = sorted(deltas)
    n = len(paired)
    counts = {"paired": n, **{s: sum(i["status"] == s for i in instances) for s in _STATUSES}}
    return Comparison(
        source=baseline.source,
        instances=instances,
        mean_then=sum(then[i].score for i in paired) / n if n else 0.0,
        mean_now=sum(now[i].score for i in paired) / n if n else 0.0,
        mean_delta=sum(deltas.values()) / n if n else 0.0,
        ci=bootstrap_ci([deltas[i] for i in paired]),
        by_language=_groups(instances, "language"),
        by_difficulty=_groups(instances, "difficulty"),
        resolved_gained=[i for i in paired if then[i].score < RESOLVED_THRESHOLD <= now[i].score],
        resolved_lost=[i for i in paired if now[i].score < RESOLVED_THRESHOLD <= then[i].score],
        flips=flips,
        counts=counts,
        gold=_gold_means(instances),
    )


_STATUSES = ("improved", "regressed", "same", "new", "gone")


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def _gold_means(instances: list[dict[str, Any]]) -> dict[str, float] | None:
    both = [i for i in instances if "gold_delta" in i]
    if not both:
        return None
    n = len(both)
    return {
        "paired": float(n),
        "mean_then": sum(i["gold_then"] for i in both) / n,
        "mean_now": sum(i["gold_now"] for i in both) / n,
        "mean_delta": sum(i["gold_delta"] for i in both) / n,
    }


def _groups(instances: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    from pytest_programbench.reporting.summary import _order

    groups: dict[str, list[float]] = {}
    for i in instances:
        if "delta" in i:
            groups.setdefault(str(i[key]), []).append(i["delta"])
    return {
        name: {"instances": len(ds), "mean_delta": sum(ds) / len(ds)}
        for name, ds in sorted(groups.items(), key=lambda kv: _order(key, kv[0]))
    }
