"""The sandbox org as one object: the emulated API, Bulk API 2.0 jobs and the test-control side.

`SandboxState` is both what the HTTP handlers call and the Python control API tests use; see `org.Org` for how the
parts fit together.
"""

from __future__ import annotations

from .api import Api
from .auth import Session, TokenError
from .control import Control
from .jobs import BulkJobs

__all__ = ["SandboxState", "Session", "TokenError"]


class SandboxState(Control, Api, BulkJobs):
    """The sandbox org. Safe to call from any thread."""
