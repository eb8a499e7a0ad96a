"""ticketlab: find, test, transfer and compress lottery tickets in pre-trained networks."""

from .api import apply_ticket, load_ticket
from .earlybert import EarlyBertResult, EarlyBirdConfig, earlybert
from .errors import TicketlabError
from .lottery import LotteryResult, find
from .models import import_resnet, load_compact  # importing models registers the compact models and ResNets with the Auto classes
from .pretrain import pretrain
from .transfer import transfer

__all__ = [
    "EarlyBertResult",
    "EarlyBirdConfig",
    "LotteryResult",
    "TicketlabError",
    "apply_ticket",
    "earlybert",
    "find",
    "import_resnet",
    "load_compact",
    "load_ticket",
    "pretrain",
    "transfer",
]
