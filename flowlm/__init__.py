"""flowlm: flow language models (FLM) and distilled flow maps (FMLM) in PyTorch.

Layers, each importable on its own (dependencies run one way, DESIGN §4):
``interpolants`` ← ``flow`` ← ``denoisers`` / ``oracles`` / ``samplers`` ← ``flowmaps`` ← ``nets`` ←
``models`` ← ``training`` ← ``data`` / ``evaluation`` ← ``experiments`` ← ``cli``.

``flowlm.Flow`` (an interpolant and its t ↔ τ schedule) is the object that composes them.
"""

from flowlm.flow import Flow, PathSample
from flowlm.prompt import Prompt

__version__ = "0.1.0"

__all__ = ["Flow", "PathSample", "Prompt", "__version__"]
