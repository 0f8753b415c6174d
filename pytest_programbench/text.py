"""Text from agents and submissions, made safe to print on a terminal.

Workspace file names, hidden-test names, agent messages and evaluator output are written
by whoever controls the agent or the submission. An escape sequence in them moves the
cursor, recolours, retitles or clears the user's terminal; a newline or carriage return
splits or overwrites a row of the summary. Whatever the plugin prints from such data
(terminal summary, failure reasons, progress lines, warnings) goes through
:func:`printable`. Files for machines escape in their own way: JUnit XML and the HTML
page through their writers, JSON through ``json.dumps``.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls, DEL, C1 controls (a lone 0x9b is a CSI on some terminals), and the Unicode
# bidirectional overrides that make a line read other than it is (CVE-2021-42574).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, newlines: bool = False) -> str:
    """``str(text)`` with every control character written as an escape (``\\x1b``, ``\\n``).

    ``newlines=True`` keeps line breaks and tabs, for text that is several lines on
    purpose (an error's cause and remedy); a carriage return is escaped either way.
    """
    value = str(text)
    if not _UNSAFE.search(value):
        return value
    if not newlines:
        return _UNSAFE.sub(_escape, value)
    return "\n".join(_UNSAFE.sub(_escape_but_tabs, line) for line in value.split("\n"))


def _escape_but_tabs(match: re.Match[str]) -> str:
    return "\t" if match.group() == "\t" else _escape(match)


def printable_repr(longrepr: Any) -> Any:
    """A failure's ``longrepr`` (pytest's ``ReprExceptionInfo``) with its text through printable.

    A harness error's message quotes what the agent or the submission said; pytest prints
    the repr's lines and its crash message (the short summary's) as they are. Anything not
    shaped like that is returned untouched.
    """
    crash: Any = getattr(longrepr, "reprcrash", None)
    if isinstance(getattr(crash, "message", None), str):
        crash.message = printable(crash.message)
    for entry in getattr(getattr(longrepr, "reprtraceback", None), "reprentries", ()):
        if isinstance(getattr(entry, "lines", None), list):
            entry.lines = [printable(line) for line in entry.lines]
    return longrepr
