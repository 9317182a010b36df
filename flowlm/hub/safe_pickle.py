r"""Read a PyTorch/Lightning ``.ckpt`` without running code from the file.

A ``.ckpt`` is a zip holding a pickle. Unpickling calls whatever globals the file names (its
``GLOBAL``/``STACK_GLOBAL`` opcodes followed by ``REDUCE``/``NEWOBJ``/``BUILD``), so a file can run
any code at load time (``os.system``, ``builtins.exec``, ...). ``torch.load(weights_only=True)`` is
safe but refuses the FLM authors' files, whose ``hyper_parameters`` pickle a tokenizer object and
the run config.

:func:`read_checkpoint` plugs :class:`RestrictedUnpickler` into ``torch.load`` (its
``pickle_module=``): ``find_class`` returns the real object only for what tensors and plain
containers need (:data:`ALLOWED`: the tensor/parameter rebuild functions, ``OrderedDict``, builtin
container and number types, torch dtypes / devices / layouts / memory formats; torch itself maps
storage classes); **every other global becomes an inert placeholder class** (a subclass of
:class:`Inert` named after it), never the real one. The placeholder accepts and records whatever
the pickle hands it (constructor arguments, state, items) and does nothing else, so the import
succeeds, the tensors load, and no code from the file runs. What the placeholders stood for can be
inspected (``obj.module``, ``obj.name``, ``obj.args``, ``obj.state``) but not executed.
"""

from __future__ import annotations

import _compat_pickle
import collections
import os
import pickle
import types
from typing import Any

import torch

__all__ = ["Inert", "RestrictedUnpickler", "read_checkpoint", "ALLOWED"]

# (module, name) pairs resolved to the real object: enough for tensors, parameters and plain containers
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Size"),
    ("torch", "device"),
    ("collections", "OrderedDict"),
    *((("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                                  "bool", "str", "bytes", "bytearray", "slice", "range"))),
})


class Inert:
    """Stands in for a global the file named but that was not allowed. Calling the placeholder
    class only records what it is given; no method of the real class is ever looked up or run."""

    module: str = ""
    name: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "Inert":
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, list_items=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: D107 - record only, in __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["list_items"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["list_items"].extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.module}.{self.name}>"


_placeholders: dict[tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    key = (module, name)
    if key not in _placeholders:
        _placeholders[key] = type(f"Inert[{module}.{name}]", (Inert,), {"module": module, "name": name})
    return _placeholders[key]


def _allowed_object(module: str, name: str) -> Any | None:
    if (module, name) in ALLOWED:
        mod = {"torch._utils": torch._utils, "torch._tensor": torch._tensor, "torch": torch,
               "torch.nn.parameter": torch.nn.parameter, "collections": collections}.get(module)
        if module == "builtins":
            import builtins

            mod = builtins
        return getattr(mod, name)
    if module == "torch":  # dtypes (torch.float32, ...), layouts, memory formats: plain constants
        obj = getattr(torch, name, None)
        if isinstance(obj, (torch.dtype, torch.layout, torch.memory_format)):
            return obj
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` yields real objects only for :data:`ALLOWED`
    (and torch dtype/layout constants); anything else becomes an :class:`Inert` placeholder."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        # protocol-2 pickles (torch.save's) spell Python 3 names the Python 2 way (__builtin__.dict)
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        obj = _allowed_object(module, name)
        return obj if obj is not None else _placeholder(module, name)


_restricted_pickle = types.SimpleNamespace(
    __name__="flowlm.hub.safe_pickle", Unpickler=RestrictedUnpickler,
    load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(),
)


def read_checkpoint(path: str | os.PathLike, *, trust_pickle: bool = False, map_location: Any = "cpu") -> Any:
    """The object pickled in ``path`` (a ``torch.save`` / Lightning ``.ckpt``), with tensors on ``map_location``.

    By default the restricted unpickler above reads it: tensors and plain containers come back,
    every other object is an :class:`Inert` placeholder, and nothing from the file runs.

    ``trust_pickle=True`` runs the full pickle machinery (``torch.load(weights_only=False)``).
    **This is dangerous**: a pickle is a program, and loading it executes whatever calls it
    contains with your permissions (delete files, start processes, read credentials). Pass it
    only for a file you made yourself or whose origin you trust, and only when you need the
    non-tensor objects (for weights alone the default is enough).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    if trust_pickle:
        return torch.load(path, map_location=map_location, weights_only=False)
    def restricted(**kwargs: Any) -> Any:
        return torch.load(path, map_location=map_location, weights_only=False, pickle_module=_restricted_pickle,
                          **kwargs)

    try:
        try:  # memory-mapped: a multi-GB .ckpt (optimizer state included) is not read into memory at once
            return restricted(mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return restricted()  # the legacy (non-zip) format cannot be memory-mapped
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ValueError(f"{path!r} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
