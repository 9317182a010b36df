"""Matplotlib, imported only when a figure is drawn (it is the optional ``plot`` extra)."""

from __future__ import annotations

from typing import Any

__all__ = ["MissingPlotDependencyError", "pyplot"]


class MissingPlotDependencyError(ImportError):
    """matplotlib is not installed; figures need the ``plot`` extra."""


def pyplot(purpose: str) -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or a clear error saying how to get it.

    ``purpose`` names what was being drawn, for the message (e.g. ``"the quickstart Gen PPL plot"``).
    """
    try:
        import matplotlib
    except ImportError:
        raise MissingPlotDependencyError(
            f"{purpose} needs matplotlib, which is optional: pip install 'flowlm[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
