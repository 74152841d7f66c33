"""What goes wrong building or checking a wheel set: one KitError family, each naming the fix."""
from __future__ import annotations

from kaggle_kit.errors import KitError


class WheelError(KitError):
    """A wheel set cannot be built or does not install offline."""


class MissingWheelError(WheelError):
    """No wheel of a requirement exists for the target's Python / platform."""


class ImageConflictError(WheelError):
    """A requirement needs a version of a package the image pins (protected)."""


class CheckError(WheelError):
    """The offline check failed."""
