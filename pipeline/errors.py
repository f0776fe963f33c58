"""The one exception type that crosses the user boundary.

Anything a user can get wrong (a missing file, an unknown class, a forget set that
covers everything) raises `UserError` with text that says what to do. The CLI prints
it as one line and exits non-zero; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in input or configuration that the user can fix."""
