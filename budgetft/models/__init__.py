"""Model loading: the hub, a local directory, or a copy embedded in a PyPI package."""
