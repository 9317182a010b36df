"""The one distiller-name table (flowlm.flowmaps.registry) and the places that rely on it."""

from __future__ import annotations

import pytest

from flowlm.flowmaps import DISTILLERS, EulerianDistiller, LagrangianDistiller, SemigroupDistiller, distiller_class


def test_names_map_to_their_classes_in_report_order():
    assert list(DISTILLERS) == ["semigroup", "lagrangian", "eulerian"]
    assert distiller_class("semigroup") is SemigroupDistiller
    assert distiller_class(" Lagrangian ") is LagrangianDistiller
    assert distiller_class("eulerian") is EulerianDistiller
    assert all(cls.name == name for name, cls in DISTILLERS.items())
    with pytest.raises(TypeError):
        DISTILLERS["other"] = SemigroupDistiller  # read-only: one table, changed in one place


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown distiller 'eulerain'; did you mean 'eulerian'\?"):
        distiller_class("eulerain")
    with pytest.raises(ValueError, match="choose one of semigroup, lagrangian, eulerian"):
        distiller_class("consistency")


def test_the_torch_free_cli_names_agree_with_the_registry():
    from flowlm import presets

    assert presets.DISTILL_METHODS == tuple(DISTILLERS)
