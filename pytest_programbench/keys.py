"""Stash keys: the session state each process keeps for itself.

Nothing here crosses xdist: workers compute their own copies from the same
settings, and results travel on test reports instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_programbench.model import Selection
from pytest_programbench.selection.settings import Settings

SETTINGS_KEY = pytest.StashKey[Settings]()
SELECTION_KEY = pytest.StashKey[Selection]()
RUN_DIR_KEY = pytest.StashKey[Path]()
RUN_ID_KEY = pytest.StashKey[str]()
#: The directory under the session's basetemp that every xdist worker shares (see pb_shared_dir).
SHARED_DIR_NAME = "programbench-shared"
