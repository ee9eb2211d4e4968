"""The exception types the CLI turns into one line on stderr (exit code 2, or 130 for Ctrl-C)."""


class UserError(Exception):
    """Bad input or an unusable environment: the message says what is wrong and what to do."""


class Interrupted(UserError):
    """Ctrl-C: the message says what was kept and how to continue."""
