"""Errors a user can fix.

Everything the user can act on (a bad file, a missing dependency, a wrong option) is raised as
:class:`UserError`. The CLI prints its message as one line, without a traceback, and exits with
status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input or environment, with a message that says what to do."""

    exit_code: int = 2
