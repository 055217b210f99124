"""The data side's one error type, importable from every data module without a circle."""


class DataError(ValueError):
    """A dataset that cannot be used as configured; the message names the path and the fix."""
