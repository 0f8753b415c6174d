"""The pure tier: no engine, no subprocess session; runs alone in seconds (``tox -e unit``).

``tox -e unit`` runs it with ``--confcutdir tests/unit`` so the real-engine conftest one
level up (and its engine fixtures) is never loaded; run from the whole suite, that
conftest loads too but nothing here asks for its fixtures.
"""

from __future__ import annotations

# Imported once, before any in-process pytester session: pytester restores sys.modules
# after each one, and a yaml imported again inside it no longer matches its cached C
# loader ("could not determine a constructor for the tag None").
import yaml  # noqa: F401

import pytest_programbench.plugin  # noqa: F401  (the same reason: one copy for every session)
