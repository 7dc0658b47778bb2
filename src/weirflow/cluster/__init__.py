"""The cluster: a node registry on Redis whose reads never wait on the network.

``Registry`` (see ``registry.py`` and docs/cluster.md), ``Node`` (one node at one
revision), ``Reservation`` (a slot held by a dispatcher), ``Membership`` (a process
as a node, heartbeating), ``Dispatcher`` and ``Reassigner`` (durable jobs assigned to
nodes, and given back when a node is gone: ``dispatch.py``), and the errors
``ClusterError``, ``NodeGoneError`` and ``InvalidNodeError`` (in ``weirflow.errors``).
"""

from __future__ import annotations

from ..errors import ClusterError, InvalidNodeError, NodeFullError, NodeGoneError
from .cache import Reservation
from .dispatch import Dispatcher, Reassigner
from .membership import Membership
from .metrics import RegistryMetrics
from .node import Node, NodeState
from .registry import Registry, Status, redact

__all__ = [
    "ClusterError",
    "Dispatcher",
    "InvalidNodeError",
    "Membership",
    "Node",
    "NodeFullError",
    "NodeGoneError",
    "NodeState",
    "Reassigner",
    "Registry",
    "RegistryMetrics",
    "Reservation",
    "Status",
    "redact",
]
