"""ticketlab: find, test, transfer and compress lottery tickets in pre-trained networks."""

from .api import apply_ticket, load_ticket
from .earlybert import EarlyBertResult, EarlyBirdConfig, earlybert
from .errors import TicketlabError
from .lottery import LotteryResult, find
from .models import load_compact  # importing it registers the compact model classes with the Auto classes

__all__ = [
    "EarlyBertResult",
    "EarlyBirdConfig",
    "LotteryResult",
    "TicketlabError",
    "apply_ticket",
    "earlybert",
    "find",
    "load_compact",
    "load_ticket",
]
