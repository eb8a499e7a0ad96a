"""Run by test_distributed.py under torchrun: what a launch's processes share, checked from inside. Writes what rank
0 saw to the JSON file named by the first argument."""

import json
import sys

import torch

from ticketlab.errors import TicketlabError
from ticketlab.train import accelerator, check_same_mask, predict


def main(out: str) -> None:
    acc = accelerator()
    features = [{"x": torch.tensor([float(i)])} for i in range(13)]  # 13: no batch splits evenly over 2 processes
    outputs = predict(
        torch.nn.Identity(),
        features,
        lambda items: {"x": torch.stack([item["x"] for item in items])},
        3,
        lambda output, batch: {"y": output},
        lambda model, batch, generator: 2 * batch["x"],
    )
    check_same_mask({"w": torch.tensor([True, False])}, "the same mask")
    try:
        check_same_mask({"w": torch.tensor([True, acc.process_index == 0])}, "another mask on process 1")
        refused = None
    except TicketlabError as error:
        refused = str(error)
    seen = {"processes": acc.num_processes, "y": outputs["y"].flatten().tolist(), "refused": refused}
    if acc.is_main_process:
        with open(out, "w", encoding="utf-8") as file:
            json.dump(seen, file)


if __name__ == "__main__":
    main(sys.argv[1])
