"""A marker for errors whose messages are safe to show operators and write to logs: they name
files, tags, keys and causes, never a value from a dataset."""


class SafeMessage(Exception):
    """Base for errors whose text carries no PHI (see the module docstring)."""
