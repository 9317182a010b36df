"""The distiller names: one table from a name (as used by configs, the CLI and reports) to its class.

``DISTILLERS["semigroup"]`` is :class:`~flowlm.flowmaps.SemigroupDistiller`, and so on; the order
(semigroup, Lagrangian, Eulerian) is the order of every report. :func:`distiller_class` looks a
name up with a "did you mean" error. (``flowlm.presets.DISTILL_METHODS`` repeats the names without
importing torch, for the command line; a test checks that the two agree.)
"""

from __future__ import annotations

import difflib
from types import MappingProxyType

from flowlm.flowmaps.distiller import Distiller
from flowlm.flowmaps.eulerian import EulerianDistiller
from flowlm.flowmaps.lagrangian import LagrangianDistiller
from flowlm.flowmaps.semigroup import SemigroupDistiller

__all__ = ["DISTILLERS", "distiller_class"]

#: name -> distiller class, read-only; each class's ``name`` attribute is its key
DISTILLERS: MappingProxyType[str, type[Distiller]] = MappingProxyType(
    {cls.name: cls for cls in (SemigroupDistiller, LagrangianDistiller, EulerianDistiller)}
)


def distiller_class(name: str) -> type[Distiller]:
    """The distiller class called ``name`` (``"semigroup"``, ``"lagrangian"`` or ``"eulerian"``).

    Case and surrounding spaces are ignored; an unknown name raises ``ValueError`` listing the
    names and the closest match.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key in DISTILLERS:
        return DISTILLERS[key]
    close = difflib.get_close_matches(str(key), list(DISTILLERS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown distiller {name!r}; {hint}choose one of {', '.join(DISTILLERS)}")
