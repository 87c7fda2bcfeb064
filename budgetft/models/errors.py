"""The models package's error: a model that cannot be resolved, read or loaded."""


class ModelError(ValueError):
    """A model that cannot be loaded. The message names the problem and the fix."""
