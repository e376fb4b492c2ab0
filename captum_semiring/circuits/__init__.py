"""Circuits from semiring flows.

* :class:`ComponentGraph` (:func:`trace`): embeddings, attention heads (read
  through their query, key and value), MLPs and logits of a recorded model, found
  from the recorded ops, and the edges between them;
* edge scores: :meth:`ComponentGraph.edge_flows` under any semiring, and
  :func:`eap`, :func:`eap_ig` on the same edges;
* circuits: :func:`top_edges`, :func:`greedy`, :func:`path_union`;
* faithfulness: :class:`EdgePatching` runs the model with every edge outside a
  circuit patched.
"""

from .circuit import Circuit, greedy, path_union, top_edges
from .components import Component, Edge
from .eap import eap, eap_ig
from .graph import ComponentGraph, EdgeScores, trace
from .patching import EdgePatching

__all__ = [
    "Circuit",
    "Component",
    "ComponentGraph",
    "Edge",
    "EdgePatching",
    "EdgeScores",
    "eap",
    "eap_ig",
    "greedy",
    "path_union",
    "top_edges",
    "trace",
]
