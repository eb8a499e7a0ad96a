"""ticketlab: find, test, transfer and compress lottery tickets in pre-trained networks."""

from .api import apply_ticket, load_ticket
from .earlybert import EarlyBertResult, EarlyBirdConfig, earlybert, load_compact
from .errors import TicketlabError
from .export import export_ticket, load_sparse
from .lottery import LotteryResult, find, transfer
from .models import (
    import_resnet,  # importing models (and earlybert) registers ResNets (compact models) with the Auto classes
)
from .pretrain import pretrain

__all__ = [
    "EarlyBertResult",
    "EarlyBirdConfig",
    "LotteryResult",
    "TicketlabError",
    "apply_ticket",
    "earlybert",
    "export_ticket",
    "find",
    "import_resnet",
    "load_compact",
    "load_sparse",
    "load_ticket",
    "pretrain",
    "transfer",
]
