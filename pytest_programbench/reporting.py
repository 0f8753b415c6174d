"""Report: what the session tells the user, from the header to the summary."""

from __future__ import annotations

from pytest_programbench.model import Selection
from pytest_programbench.settings import LANGUAGES, Settings


def header_lines(settings: Settings, selection: Selection) -> list[str]:
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
