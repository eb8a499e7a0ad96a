import numpy as np
import pytest
import torch
from helpers import trained_record
from transformers import BertConfig

from ticketlab.masks import save_mask
from ticketlab.models.matrices import matrix_of
from ticketlab.report.anatomy import head_kept, layer_type_sparsity, overlap_grid, random_iou
from ticketlab.report.plots.draw import draw_all
from ticketlab.report.plots.style import diverging_norm
from ticketlab.report.plots.transfer import transfer_figure, transfer_matrix
from ticketlab.report.results import Result

SHAPES = {
    **{f"encoder.layer.{i}.attention.self.{m}.weight": (32, 32) for i in range(2) for m in ("query", "key", "value")},
    **{f"encoder.layer.{i}.attention.output.dense.weight": (32, 32) for i in range(2)},
    **{f"encoder.layer.{i}.intermediate.dense.weight": (64, 32) for i in range(2)},
    **{f"encoder.layer.{i}.output.dense.weight": (32, 64) for i in range(2)},
    "pooler.dense.weight": (32, 32),
}
DECIDERS = {"sst2": ("dev", "accuracy"), "squad": ("dev", "f1"), "mlm": ("dev", "perplexity")}
PNG = b"\x89PNG\r\n\x1a\n"


def random_mask(keep: float, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(shape, generator=generator) < keep for name, shape in SHAPES.items()}


@pytest.fixture
def model_dir(tmp_path):
    """A base model folder with just the config: 2 attention heads of size 16."""
    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "tiny"
    )
    return tmp_path / "tiny"


def make_results(tmp_path, model_dir, transfers=True) -> list[Result]:
    """IMP over two levels, a random control and (optionally) transfers, for three tasks and two seeds."""
    results = []

    def add(task, arm, seed, round, level, value, source=None):
        path = tmp_path / f"{task}-{arm}-{source}-{seed}-{round}.safetensors"
        mask = random_mask(1 - level, len(results))
        if task == "mlm":
            mask.pop("pooler.dense.weight")  # an MLM ticket has no pooler
        save_mask(path, mask, {})
        split, metric = DECIDERS[task]
        results.append(
            Result(
                task,
                str(model_dir),
                seed,
                arm,
                source,
                round,
                level,
                level,
                {split: {metric: value}},
                path,
                tmp_path,
                trained_record(round, level, {split: {metric: value}}),
            )
        )

    for task, dense in (("sst2", 0.9), ("squad", 80.0), ("mlm", 10.0)):
        worse = 1 if task == "mlm" else -1
        for seed in (0, 1):
            add(task, "imp", seed, 0, 0.0, dense + 0.01 * seed)
            for round, level in ((1, 0.5), (2, 0.75)):
                add(task, "imp", seed, round, level, dense * (1 + worse * 0.02 * round))
                add(task, "random", seed, round, level, dense * (1 + worse * 0.1 * round))
            if transfers:
                for source in DECIDERS.keys() - {task}:
                    add(task, "transfer", seed, 1, 0.5, dense * (1 + worse * 0.05), source=source)
    return results


def test_matrix_of_names_every_bert_weight():
    assert matrix_of("encoder.layer.3.attention.self.query.weight") == (3, "query")
    assert matrix_of("encoder.layer.3.attention.output.dense.weight") == (3, "attention output")
    assert matrix_of("encoder.layer.11.intermediate.dense.weight") == (11, "FFN in")
    assert matrix_of("encoder.layer.3.output.dense.weight") == (3, "FFN out")
    assert matrix_of("pooler.dense.weight") == (None, "pooler")
    assert matrix_of("embeddings.word_embeddings.weight") is None
    assert matrix_of("encoder.layer.3.attention.self.query.bias") is None


def test_layer_type_sparsity_is_exact():
    mask = random_mask(1.0, 0)
    mask["encoder.layer.1.attention.self.key.weight"][:8] = False  # a quarter of one key matrix
    mask["encoder.layer.0.intermediate.dense.weight"][:] = False
    mask["pooler.dense.weight"][:, :16] = False
    grid = layer_type_sparsity(mask)
    assert grid.rows == ("0", "1", "all")
    assert grid.columns == ("query", "key", "value", "attention output", "FFN in", "FFN out", "pooler", "all")

    def cell(row, column):
        return grid.values[grid.rows.index(row), grid.columns.index(column)]

    assert cell("1", "key") == 0.25 and cell("0", "key") == 0.0
    assert cell("all", "key") == 0.125
    assert cell("0", "FFN in") == 1.0 and cell("all", "FFN in") == 0.5
    assert cell("0", "all") == 2048 / (4 * 1024 + 2 * 2048)
    assert cell("all", "pooler") == 0.5 and np.isnan(cell("0", "pooler"))
    assert cell("all", "all") == pytest.approx((256 + 2048 + 512) / sum(a * b for a, b in SHAPES.values()))


def test_head_kept_reads_rows_of_qkv_and_columns_of_the_output():
    mask = random_mask(1.0, 0)
    for m in ("query", "key", "value"):
        mask[f"encoder.layer.1.attention.self.{m}.weight"][16:] = False  # head 1 of layer 1: its rows
    mask["encoder.layer.1.attention.output.dense.weight"][:, 16:] = False  # and its columns
    mask["encoder.layer.0.attention.output.dense.weight"][:, :16] = False  # head 0 of layer 0: only the output
    grid = head_kept(mask, heads=2)
    assert grid.rows == ("0", "1") and grid.columns == ("0", "1")
    assert grid.values.tolist() == [[0.75, 1.0], [1.0, 0.0]]


def test_iou_of_identical_disjoint_and_pooler_less_tickets():
    a = random_mask(0.5, 0)
    disjoint = {name: ~m for name, m in a.items()}
    no_pooler = {name: m for name, m in a.items() if not name.startswith("pooler")}
    grid = overlap_grid({"a": [a, a], "b": [disjoint], "c": [no_pooler]})
    assert grid.values[0, 0] == 1.0  # between seeds of a
    assert grid.values[0, 1] == grid.values[1, 0] == 0.0
    assert grid.values[0, 2] == 1.0  # over the weights both have
    assert np.isnan(grid.values[1, 1])  # one ticket: no pair


def test_random_iou_is_what_random_masks_have():
    a, b = random_mask(0.3, 1), random_mask(0.3, 2)
    grid = overlap_grid({"a": [a], "b": [b]})
    assert grid.values[0, 1] == pytest.approx(random_iou(0.7), abs=0.01)


def test_diverging_norm_is_centred_at_zero():
    norm = diverging_norm(np.array([-0.5, 2.0, np.nan]), np.array([[-3.0]]))
    assert (norm.vmin, norm.vmax) == (-3.0, 3.0)
    assert norm(0.0) == 0.5
    all_losses, all_gains = diverging_norm(np.array([-1.0, -0.2])), diverging_norm(np.array([0.2, 1.0]))
    assert all_losses(0.0) == all_gains(0.0) == 0.5 and all_losses(-1.0) == 0.0


def test_transfer_matrix_is_the_difference_of_means_and_gain_is_signed_by_direction(tmp_path, model_dir):
    results = make_results(tmp_path, model_dir)
    delta, gain = transfer_matrix(results, DECIDERS, 0.5, "dense")
    assert delta.rows == delta.columns == ("mlm", "squad", "sst2")
    i, j = delta.rows.index("sst2"), delta.columns.index("squad")
    assert delta.values[i, j] == pytest.approx(80 * 0.95 - 80.005)  # dense mean over seeds 0 and 1
    assert gain.values[i, j] < 0  # squad F1 down: worse
    mlm = delta.columns.index("mlm")
    assert delta.values[i, mlm] > 0 and gain.values[i, mlm] < 0  # perplexity up: also worse
    assert delta.values[j, j] == pytest.approx(80 * 0.98 - 80.005)  # diagonal: IMP on the task itself
    vs_random, random_gain = transfer_matrix(results, DECIDERS, 0.5, "random")
    assert vs_random.values[i, j] == pytest.approx(80 * 0.95 - 80 * 0.9)
    assert random_gain.values[i, j] > 0  # better than random pruning


def test_transfer_heatmap_colours_are_centred_at_zero(tmp_path, model_dir):
    figure = transfer_figure(make_results(tmp_path, model_dir), DECIDERS, 0.5)
    norms = [image.norm for ax in figure.axes for image in ax.images]
    assert len(norms) == 2 and norms[0] is norms[1]
    assert norms[0].vmin == -norms[0].vmax and norms[0](0.0) == 0.5


def test_draw_all_writes_every_figure(tmp_path, model_dir):
    out = tmp_path / "plots"
    written = draw_all(make_results(tmp_path, model_dir), DECIDERS, out)
    names = {path.name for path in written}
    tasks = ("mlm", "squad", "sst2")
    assert names == {
        *(f"curve_{t}.png" for t in tasks),
        *(f"layers_{t}.png" for t in tasks),
        *(f"heads_{t}.png" for t in tasks),
        "transfer_50.png",
        "overlap_75.png",
    }
    assert sorted(written) == sorted(out.iterdir())
    for path in written:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_draw_all_without_transfers_or_a_readable_model(tmp_path):
    results = make_results(tmp_path, tmp_path / "gone", transfers=False)
    names = {path.name for path in draw_all(results, DECIDERS, tmp_path / "plots")}
    assert "transfer_50.png" not in names and not any(name.startswith("heads_") for name in names)
    assert {"curve_sst2.png", "layers_sst2.png", "overlap_75.png"} <= names
