"""Circuits from semiring flows: component graphs, edge scores, circuits, faithfulness."""

from .components import Component, Edge
from .eap import eap, eap_ig
from .graph import ComponentGraph, EdgeScores, trace
from .patching import EdgePatching

__all__ = [
    "Component",
    "ComponentGraph",
    "Edge",
    "EdgePatching",
    "EdgeScores",
    "eap",
    "eap_ig",
    "trace",
]
