"""The cluster options of ``weirflow jobs submit`` and ``weirflow worker`` (docs/cluster.md):
the same on each command but for the help, which says what the command does with them, so
each is a function of its help: ``pool: Annotated[str | None, pool_option("...")] = None``.

(``typer.Option`` is typed ``Any`` so that it may stand as a parameter's default: so are these.)"""

from __future__ import annotations

from typing import Any

import typer


def registry_option(use: str) -> Any:
    """``--registry URL`` (or ``WEIRFLOW_REGISTRY``): the cluster's node registry."""
    return typer.Option(
        "--registry",
        envvar="WEIRFLOW_REGISTRY",
        metavar="URL",
        help=f"redis://host:port/db: {use} (docs/cluster.md).",
    )


def pool_option(help_: str) -> Any:
    """``--pool NAME``: a pool of cluster nodes."""
    return typer.Option("--pool", help=help_)


def labels_option(help_: str) -> Any:
    """``--labels K=V``, repeated: node labels (read with ``nodes.parse_labels``)."""
    return typer.Option("--labels", metavar="K=V", help=help_)
