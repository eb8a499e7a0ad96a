"""ticketlab: find, test, transfer and compress lottery tickets in pre-trained networks."""

from .api import apply_ticket, load_ticket
from .errors import TicketlabError
from .lottery import LotteryResult, find
from .models import load_compact  # importing it registers the compact model classes with the Auto classes

__all__ = ["LotteryResult", "TicketlabError", "apply_ticket", "find", "load_compact", "load_ticket"]
