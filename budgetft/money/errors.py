"""The price catalogue's errors: what a caller catches when a price or a name is not there."""

from __future__ import annotations


class CatalogError(ValueError):
    """A price that cannot be found or an instance that cannot be built."""


class UnknownName(CatalogError):
    """A GPU, machine, region, ... the catalogue does not know; the message lists the valid ones."""

    def __init__(self, what: str, name: object, valid: list[str] | tuple[str, ...]):
        self.what, self.name, self.valid = what, name, sorted(valid)
        super().__init__(f"unknown {what} {name!r}; valid: {', '.join(self.valid)}")
