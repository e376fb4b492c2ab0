"""Circuits from semiring flows: component graphs, edge scores, circuits, faithfulness."""

from .components import Component, Edge
from .graph import ComponentGraph, EdgeScores, trace

__all__ = ["Component", "ComponentGraph", "Edge", "EdgeScores", "trace"]
