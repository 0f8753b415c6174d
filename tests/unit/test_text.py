"""Text from agents and submissions is printed with its control characters escaped."""

from __future__ import annotations

import pytest

from pytest_programbench.text import printable, printable_repr

ESC = "\x1b"


def test_control_characters_become_escapes_and_nothing_else_changes() -> None:
    name = f"src/{ESC}]0;pwned\x07{ESC}[2J{ESC}[31mred\nsecond line\rover\u202eevil\x9bx"
    shown = printable(name)
    assert shown == "src/\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\nsecond line\\rover\\u202eevil\\x9bx"
    assert shown.isprintable()
    plain = "données/wc.py: 3 passed, test_ü (failed) — ok\ttab"
    assert printable(plain) == plain.replace("\t", "\\t")
    assert printable("same") == "same" and printable(42) == "42"


def test_newlines_kept_on_purpose_only_where_asked() -> None:
    text = f"cause: {ESC}[1mbold\nremedy:\tdo this\r"
    assert printable(text, newlines=True) == "cause: \\x1b[1mbold\nremedy:\tdo this\\r"
    assert "\n" not in printable(text)


def test_a_failure_repr_keeps_its_shape_with_its_text_escaped() -> None:
    try:
        raise RuntimeError(f"the agent raised: {ESC}[31mboom\nsecond {ESC}[0m")
    except RuntimeError:
        info = pytest.ExceptionInfo.from_current()
    repr_ = printable_repr(info.getrepr(style="value"))
    assert repr_.reprcrash is not None and ESC not in repr_.reprcrash.message
    lines = [line for entry in repr_.reprtraceback.reprentries for line in entry.lines]  # type: ignore[attr-defined]
    assert lines == ["the agent raised: \\x1b[31mboom", "second \\x1b[0m"]
    assert ESC not in str(repr_)
    assert printable_repr("a string longrepr") == "a string longrepr"
