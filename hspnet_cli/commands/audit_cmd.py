"""``hspnet audit``: placeholder (filled below)."""


def audit() -> None:
    """Rank likely label errors."""
