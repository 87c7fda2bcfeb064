"""Data: load rows from the hub, a local file or an embedded copy; check them; encode them."""


class DataError(ValueError):
    """Data that cannot be used. The message names the problem and the fix."""
