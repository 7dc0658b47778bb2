"""The cluster: a node registry on Redis whose reads never wait on the network.

``Registry`` (see ``registry.py`` and docs/cluster.md), ``Node`` (one node at one
revision), ``Reservation`` (a slot held by a dispatcher), ``Membership`` (a process
as a node, heartbeating), and the errors
``ClusterError``, ``NodeGoneError`` and ``InvalidNodeError`` (in ``weirflow.errors``).
"""

from __future__ import annotations

from ..errors import ClusterError, InvalidNodeError, NodeGoneError
from .cache import Reservation
from .membership import Membership
from .metrics import RegistryMetrics
from .node import Node, NodeState
from .registry import Registry, Status, redact

__all__ = [
    "ClusterError",
    "InvalidNodeError",
    "Membership",
    "Node",
    "NodeGoneError",
    "NodeState",
    "Registry",
    "RegistryMetrics",
    "Reservation",
    "Status",
    "redact",
]
