"""``GET /api/nodes``: the cluster's nodes, from this server's registry cache (no Redis call)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request

from ..auth import require_read
from ..deps import errors
from ..errors import UnavailableError
from ..node_models import NodeList

if TYPE_CHECKING:
    from ...cluster import Registry

router = APIRouter(tags=["nodes"])


def registry_status(reg: Registry) -> dict[str, Any]:
    return {
        "url": reg.safe_url,
        "status": reg.status,
        "revision": reg.revision,
        "staleness_s": reg.staleness_s,
        "nodes": len(reg.nodes()),
    }


@router.get("/api/nodes", response_model=NodeList, responses=errors(), dependencies=[Depends(require_read)])
async def list_nodes(
    request: Request, pool: str | None = Query(default=None, max_length=200, description="Only this pool.")
) -> dict[str, Any]:
    """Live nodes (stale ones as ``down``) and the registry's status; ``503`` without a registry
    (``--registry`` / ``WEIRFLOW_REGISTRY``). Served from the local cache: it answers while
    Redis is down, with ``registry.status`` saying so."""
    reg: Registry | None = getattr(request.app.state, "registry", None)
    if reg is None:
        raise UnavailableError("no node registry: start the server with --registry redis://host:port/db")
    return {"registry": registry_status(reg), "nodes": [n.to_dict() for n in reg.nodes(pool)]}
