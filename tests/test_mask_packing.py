"""Packed mask files (ticketlab.masks, ticketlab.rice): bit-for-bit round trips, old unpacked files, damage refused in
one line and never read as a wrong mask, the size against the entropy bound, and `ticketlab ticket show`."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import ticketlab
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.masks import PACKING, _crc, entropy_bound, load_mask, save_mask

SHAPES = [(0,), (1,), (1, 1), (37,), (13, 17), (256, 384), (8, 4, 3, 3), (0, 5)]
PATTERNS = {
    "none kept": lambda size, rng: np.zeros(size, dtype=bool),
    "all kept": lambda size, rng: np.ones(size, dtype=bool),
    **{f"density {p}": (lambda p: lambda size, rng: rng.random(size) < p)(p) for p in (0.5, 0.3, 0.1, 0.001, 0.999)},
    "clustered runs": lambda size, rng: np.arange(size) // 7 % 5 == 0,  # 7 kept, 28 pruned, ...
    "2:4": lambda size, rng: np.arange(size) % 4 < 2,
    "one block kept": lambda size, rng: (np.arange(size) >= size // 3) & (np.arange(size) < size // 2),
    "first and last": lambda size, rng: np.isin(np.arange(size), [0, size - 1]),
    "all but the first": lambda size, rng: np.arange(size) > 0,
}


def make_mask(pattern: str, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {
        f"encoder.layer.{i}.weight": torch.from_numpy(PATTERNS[pattern](math.prod(shape), rng).reshape(shape))
        for i, shape in enumerate(SHAPES)
    }


@pytest.mark.parametrize("pattern", PATTERNS)
def test_packed_masks_round_trip_bit_for_bit(pattern, tmp_path):
    mask = make_mask(pattern)
    save_mask(tmp_path / "m.safetensors", mask, {"task": "sst2", "round": 3})
    loaded, metadata = load_mask(tmp_path / "m.safetensors")
    assert metadata == {"task": "sst2", "round": "3"}
    assert list(loaded) == list(mask)
    for name, m in mask.items():
        assert loaded[name].dtype == torch.bool and loaded[name].shape == m.shape and torch.equal(loaded[name], m)


def test_the_file_holds_coded_bytes_and_how_they_are_coded(tmp_path):
    mask = make_mask("density 0.1")
    save_mask(tmp_path / "m.safetensors", mask, {"seed": 0})
    with safe_open(tmp_path / "m.safetensors", "pt") as handle:
        stored = {name: handle.get_tensor(name) for name in handle.keys()}
        packing = json.loads(handle.metadata()[PACKING])
    assert all(t.dtype == torch.int8 and t.dim() == 1 for t in stored.values())
    entry = packing["matrices"]["encoder.layer.5.weight"]
    assert entry["shape"] == [256, 384] and entry["kept"] == int(mask["encoder.layer.5.weight"].sum())
    assert entry["coded"] == "kept" and packing["matrices"]["encoder.layer.0.weight"]["unary_bits"] == 0
    total = sum(m.numel() for m in mask.values())
    assert sum(t.numel() for t in stored.values()) < total / 8 * 0.5  # under half a bit per weight


def test_the_same_mask_gives_the_same_file_in_any_order(tmp_path):
    """The same tensors and metadata (safetensors orders the metadata entries as it likes, so not the same bytes)."""
    mask = make_mask("density 0.1")
    save_mask(tmp_path / "a.safetensors", mask, {"seed": 0})
    save_mask(tmp_path / "b.safetensors", dict(reversed(mask.items())), {"seed": 0})
    files = []
    for name in ("a", "b"):
        with safe_open(tmp_path / f"{name}.safetensors", "pt") as handle:
            files.append((handle.metadata(), {key: handle.get_tensor(key).tolist() for key in handle.keys()}))
    assert files[0] == files[1]


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8])
def test_old_unpacked_files_still_load(dtype, tmp_path):
    mask = make_mask("density 0.3")
    save_file({n: m.to(dtype) for n, m in mask.items()}, tmp_path / "old.safetensors", metadata={"round": "2"})
    loaded, metadata = load_mask(tmp_path / "old.safetensors")
    assert metadata == {"round": "2"}
    assert all(loaded[n].dtype == torch.bool and torch.equal(loaded[n], m) for n, m in mask.items())


def test_a_90_percent_mask_of_a_million_weights_is_within_1_05_of_the_entropy_bound(tmp_path):
    rng = np.random.default_rng(0)
    mask = {f"encoder.layer.{i}.output.dense.weight": torch.from_numpy(rng.random((512, 512)) >= 0.9) for i in range(4)}
    save_mask(tmp_path / "m.safetensors", mask, {"seed": 0})
    assert (tmp_path / "m.safetensors").stat().st_size <= 1.05 * entropy_bound(mask)


def test_entropy_bound():
    half = {"a": torch.tensor([True, False] * 8), "b": torch.ones(16, dtype=torch.bool)}
    assert entropy_bound({"a": half["a"]}) == 2.0  # 16 weights at 1 bit
    assert entropy_bound(half, per_matrix=True) == 2.0  # b costs nothing on its own
    assert entropy_bound(half) == pytest.approx(32 * 0.8112781 / 8)  # 32 weights at sparsity 1/4


def small_file(tmp_path):
    """A packed file of three matrices: one at 90% sparsity, one at 40%, one dense (no coded bytes)."""
    rng = np.random.default_rng(1)
    mask = {
        "encoder.layer.0.attention.self.query.weight": torch.from_numpy(rng.random((16, 16)) < 0.1),
        "encoder.layer.0.attention.self.value.weight": torch.from_numpy(rng.random((16, 16)) < 0.6),
        "pooler.dense.weight": torch.ones(8, 8, dtype=torch.bool),
    }
    path = tmp_path / "m.safetensors"
    save_mask(path, mask, {"round": 1})
    return path, mask


def refused(path, match: str | None = None) -> str:
    with pytest.raises(TicketlabError, match=match) as caught:
        load_mask(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    return message


def test_a_truncated_packed_file_is_refused_in_one_line(tmp_path):
    path, _ = small_file(tmp_path)
    whole = path.read_bytes()
    for length in range(len(whole)):
        path.write_bytes(whole[:length])
        refused(path)


def test_no_flipped_bit_anywhere_in_the_file_gives_a_wrong_mask(tmp_path):
    """Every single-bit flip of a packed file: refused in one line, or (a flip in the caller's metadata, in the
    header's padding) the very same mask."""
    path, mask = small_file(tmp_path)
    whole = path.read_bytes()
    header = 8 + int.from_bytes(whole[:8], "little")
    refusals = {True: 0, False: 0}  # by whether the bit is in the tensors' bytes
    for bit in range(8 * len(whole)):
        damaged = bytearray(whole)
        damaged[bit // 8] ^= 1 << bit % 8
        path.write_bytes(bytes(damaged))
        try:
            loaded, _ = load_mask(path)
        except TicketlabError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            refusals[bit >= 8 * header] += 1
            continue
        assert bit < 8 * header and list(loaded) == list(mask), bit
        assert all(torch.equal(loaded[n], m) for n, m in mask.items()), bit
    assert refusals[True] == 8 * (len(whole) - header)  # every flip in a coded stream is refused


def test_a_flipped_byte_in_a_stream_names_the_matrix(tmp_path):
    path, _ = small_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    refused(path, "damaged mask file: .*value.weight: its CRC-32 does not match")


def rewrite(path, change, reseal: bool = False) -> None:
    """Write the file again with its packing entry changed (and, with `reseal`, its CRC-32s made to match)."""
    with safe_open(path, "pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        metadata = handle.metadata()
    record = json.loads(metadata[PACKING])
    text = change(record)
    if reseal:
        for name, entry in record["matrices"].items():
            fields = {k: v for k, v in entry.items() if k != "crc32"}
            entry["crc32"] = _crc(name, fields, tensors[name].numpy().view(np.uint8))
    metadata[PACKING] = text if isinstance(text, str) else json.dumps(record)
    save_file(tensors, path, metadata=metadata)


QUERY = "encoder.layer.0.attention.self.query.weight"


def entry(record, field, value):
    record["matrices"][QUERY][field] = value


CHANGES = {
    "a count": lambda r: entry(r, "kept", r["matrices"][QUERY]["kept"] + 1),
    "a shape of the same size": lambda r: entry(r, "shape", [8, 32]),
    "the coded symbol": lambda r: entry(r, "coded", "pruned"),
    "k": lambda r: entry(r, "k", r["matrices"][QUERY]["k"] + 1),
    "a stream length": lambda r: entry(r, "unary_bits", r["matrices"][QUERY]["unary_bits"] - 1),
    "a CRC": lambda r: entry(r, "crc32", r["matrices"][QUERY]["crc32"] ^ 1),
    "a missing field": lambda r: r["matrices"][QUERY].pop("k"),
    "a missing matrix": lambda r: r["matrices"].pop(QUERY),
    "another format": lambda r: r.update(format="golomb-rice/9"),
    "garbage": lambda r: "{not json",
    "a list": lambda r: "[]",
}


@pytest.mark.parametrize("change", CHANGES)
def test_wrong_packing_metadata_is_refused_in_one_line(change, tmp_path):
    path, _ = small_file(tmp_path)
    rewrite(path, CHANGES[change])
    refused(path, "damaged mask file")


@pytest.mark.parametrize(
    "field, delta", [("kept", 1), ("kept", -1), ("unary_bits", 1), ("unary_bits", -1), ("k", 1), ("k", -1)]
)
def test_counts_and_lengths_are_checked_beside_the_crc(field, delta, tmp_path):
    """A count, stream length or k that disagrees with the bytes is refused even under a matching CRC-32."""
    path, _ = small_file(tmp_path)
    rewrite(path, lambda r: entry(r, field, r["matrices"][QUERY][field] + delta), reseal=True)
    refused(path, f"damaged mask file: {QUERY}")


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    return ticketlab.find(
        str(tiny_model_dir),
        sparsity=0.1,
        out=tmp_path_factory.mktemp("store"),
        train_examples=16,
        batch_size=64,
        epochs=1,
        max_length=16,
    ).path


@pytest.mark.parametrize("ticket", ["{run}", "{run}:1", "{run}/round_01/mask.safetensors"])
def test_ticket_show_prints_provenance_sparsity_per_type_and_size(ticket, tiny_run, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["ticket", "show", ticket.format(run=tiny_run)]) == 0
    out = capsys.readouterr().out
    mask, metadata = load_mask(tiny_run / "round_01" / "mask.safetensors")
    assert f"Ticket {tiny_run / 'round_01' / 'mask.safetensors'}" in out
    assert metadata["task"] == "rotten-tomatoes" and "rotten-tomatoes" in out and metadata["config_hash"] in out
    for kind in ("query", "key", "value", "attention output", "FFN in", "FFN out", "pooler", "all"):
        assert f"│ {kind} " in out, kind
    total = sum(m.numel() for m in mask.values())
    assert f"{total:,}" in out and "10.00%" in out
    size = (tiny_run / "round_01" / "mask.safetensors").stat().st_size
    assert "this file  " in out and f"{size:,}" in out and f"{entropy_bound(mask):,.0f}" in out
