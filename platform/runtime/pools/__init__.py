"""Public pools (公海池): records nobody follows up return to a pool; members claim and release them."""
from . import jobs  # noqa: F401  (registers the pools' job handlers)
from .definitions import Pool, PoolMember
from .errors import ClaimLimitReached, CoolingDown, HoldingCapReached
from .service import PooledRecord, PoolMove, PoolPage, PoolService

__all__ = ["Pool", "PoolMember", "ClaimLimitReached", "CoolingDown", "HoldingCapReached", "PooledRecord", "PoolMove",
           "PoolPage", "PoolService"]
