"""What a pre-trained model folder holds beside its weights: the methods and the record `pretrain` writes, read by
the report and the CLI without the workflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import TicketlabError
from ..models.vision import ResNetForContrastiveLearning, ResNetForImageClassification

METHODS = {  # method -> (its pre-training task, the model that trains on it)
    "supervised": ("fashion-mnist", ResNetForImageClassification),
    "simclr": ("fashion-mnist-simclr", ResNetForContrastiveLearning),
    "moco": ("fashion-mnist-moco", ResNetForContrastiveLearning),
}
RECORD = "pretrain.json"


def pretrain_record(folder: str | Path) -> dict[str, Any]:
    """What `pretrain` measured for the model in `folder`."""
    path = Path(folder) / RECORD
    if not path.is_file():
        raise TicketlabError(f"{folder} holds no finished pre-training ({RECORD} missing)")
    return json.loads(path.read_text())
