"""Run by test_distributed.py under torchrun: what a launch's processes share, checked from inside. Writes what rank
0 saw to the JSON file named by the first argument; the second is a Fashion-MNIST folder to pre-train on, the third
the folder the model goes to."""

import json
import sys
from types import SimpleNamespace

import torch
from accelerate.utils import gather_object

from ticketlab.config import TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.pretrain import pretrain
from ticketlab.train.evaluate import predict
from ticketlab.train.launch import accelerator, check_same_mask, end_launch
from ticketlab.train.loop import train

FEATURES = [{"x": torch.tensor([float(i)])} for i in range(13)]  # 13: no batch splits evenly over 2 processes


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([item["x"] for item in items])}


def noisy_training() -> tuple[list[list[float]], list[float]]:
    """A weight and a bias trained on FEATURES in batches of 4 (the last one short), each example shifted by a noise
    drawn for it from the step's data randomness: the (example, noise) pairs this process drew, and the trained
    weight and bias."""
    drawn: list[list[float]] = []

    def forward(model, batch, draws):
        x = batch["x"]
        if model.training:
            noise = draws.apply(lambda rows, generator: torch.rand(rows.shape, generator=generator), x)
            drawn.extend([example, value] for example, value in zip(x.flatten().tolist(), noise.flatten().tolist()))
            x = x + noise
        return SimpleNamespace(loss=((model(x) - 1.0) ** 2).mean())

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Linear(1, 1)
        train(model, FEATURES, collate, TrainConfig(epochs=1, batch_size=4, learning_rate=0.1), forward=forward)
    return drawn, [model.weight.item(), model.bias.item()]


def main(out: str, fashion: str, pretrained: str) -> None:
    acc = accelerator()
    outputs = predict(
        torch.nn.Identity(),
        FEATURES,
        collate,
        3,
        lambda output, batch: {"y": output},
        lambda model, batch, draws: 2 * batch["x"],
    )
    check_same_mask({"w": torch.tensor([True, False])}, "the same mask")
    try:
        check_same_mask({"w": torch.tensor([True, acc.process_index == 0])}, "another mask on process 1")
        refused = None
    except TicketlabError as error:
        refused = str(error)
    drawn, weights = noisy_training()
    options = dict(data=fashion, out=pretrained, train_examples=20, batch_size=8, epochs=1, checkpoint_every=1)
    folder = pretrain("simclr", **options)  # 3 steps, the last one short
    again = pretrain("simclr", **options)  # finished: every process returns at once
    seen = {
        "processes": acc.num_processes,
        "y": outputs["y"].flatten().tolist(),
        "refused": refused,
        "drawn": sorted({tuple(pair) for pairs in gather_object([drawn]) for pair in pairs}),
        "weights": weights,
        "pretrained": [str(folder), str(again)],
    }
    if acc.is_main_process:
        with open(out, "w", encoding="utf-8") as file:
            json.dump(seen, file)
    end_launch()


if __name__ == "__main__":
    main(*sys.argv[1:])
