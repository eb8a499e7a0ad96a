"""ticketlab: find, test, transfer and compress lottery tickets in pre-trained networks.

The names below are imported on first use (PEP 562), so that `import ticketlab` and the `ticketlab` command's help
need neither torch nor transformers. ticketlab's model types are registered with transformers' Auto classes by
`import ticketlab.models` (ResNets) and `import ticketlab.earlybert` (EarlyBERT's compact models), as by every call
that loads one."""

from __future__ import annotations

from .lazy import export_lazily

_EXPORTS = {
    ".api": ("apply_ticket", "load_ticket"),
    ".earlybert": ("EarlyBertResult", "EarlyBirdConfig", "earlybert", "load_compact"),
    ".errors": ("TicketlabError",),
    ".export": ("export_ticket", "load_sparse"),
    ".lottery": ("LotteryResult", "find", "transfer"),
    ".models": ("import_resnet",),
    ".pretrain": ("pretrain",),
}
export_lazily(__name__, _EXPORTS)
