"""flowlm: flow language models (FLM) and distilled flow maps (FMLM) in PyTorch.

Layers, each importable on its own (dependencies run one way):
``interpolants`` ← ``denoisers`` / ``oracles`` / ``samplers`` ← ``flowmaps`` ← ``nets`` ←
``training`` ← ``data`` / ``evaluation`` ← ``experiments`` ← ``cli``.
"""

__version__ = "0.1.0"
