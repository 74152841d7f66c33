"""Side-by-side benchmarks: the kit's way and a baseline, measured on the same input."""


def load_average():
    """The machine's 1/5/15-minute load averages (rounded), or None where the OS has none: benches print
    it because a busy machine moves their ratios."""
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover
        return None
