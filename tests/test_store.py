"""The run store keeps its promises: every file of a complete unit is vouched for by a digest in its marker, damage
is found and redone (writers) or refused in one line (readers), one writer at a time, nothing outside the run."""

import json
import logging
import shutil

import pytest
import torch
from helpers import TIMEOUT_S, assert_same_outputs, flip, hold_lock, truncate

import ticketlab
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.masks import load_mask, save_mask
from ticketlab.report.results import collect
from ticketlab.store import MARKER, RunStore, damage, seal, verify

FAST = dict(batch_size=16, epochs=1, learning_rate=1e-3, seed=4, sparsity=0.3, rewind_step=1)


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """60 short reviews in the Rotten Tomatoes CSV layout (48 train, 6 dev, 6 test): every evaluation is quick."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    rows = [f"{'fresh' if i % 2 else 'rotten'},{'a fine' if i % 2 else 'a dull'} film number {i}" for i in range(60)]
    path.write_text("category,text\n" + "\n".join(rows) + "\n")
    return path


def find(model_dir, out, data):
    return ticketlab.find(str(model_dir), out=out, data=str(data), controls=["random"], **FAST)


@pytest.fixture(scope="module")
def pristine(tiny_model_dir, reviews, tmp_path_factory):
    """A complete run (rounds 0-3, rewinding to step 1) with the random control at every pruned round."""
    return find(tiny_model_dir, tmp_path_factory.mktemp("pristine"), reviews).path


@pytest.fixture
def run(pristine, tmp_path):
    """A copy of the pristine run to damage."""
    return shutil.copytree(pristine, tmp_path / "runs" / pristine.name)


DAMAGE = {
    "a mask with a flipped bit": ("round_03/mask.safetensors", flip),
    "a truncated mask": ("round_03/mask.safetensors", truncate),
    "a deleted mask": ("round_03/mask.safetensors", lambda p: p.unlink()),
    "metrics.json holding {}": ("round_03/metrics.json", lambda p: p.write_text("{}")),
    "metrics.json garbage": ("round_03/metrics.json", lambda p: p.write_bytes(b"\xff\xfe garbage")),
    "a deleted metrics.json": ("round_03/metrics.json", lambda p: p.unlink()),
    "a garbage marker": ("round_03/COMPLETE", lambda p: p.write_text("not json")),
    "truncated last weights": ("round_03/weights.safetensors", truncate),
    "last weights with a flipped bit": ("round_03/weights.safetensors", flip),
    "a truncated head (its source weights discarded)": ("round_03/head.safetensors", truncate),
    "a middle round's mask with a flipped bit": ("round_01/mask.safetensors", flip),
    "truncated dense weights": ("round_00/weights.safetensors", truncate),
    "a truncated rewinding point": ("rewind.safetensors", truncate),
    "a control's mask with a flipped bit": ("branches/random/round_02/mask.safetensors", flip),
    "a control's metrics.json holding {}": ("branches/random/round_02/metrics.json", lambda p: p.write_text("{}")),
    "garbage config.json": ("config.json", lambda p: p.write_text("{")),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damage_is_reported_once_and_redone_to_the_same_files(case, tiny_model_dir, reviews, pristine, run, caplog):
    name, corrupt = DAMAGE[case]
    corrupt(run / name)
    damaged = [unit for unit, problems in verify([run]) if problems]
    assert len(damaged) == 1 and name.split("/")[-1] in json.dumps(dict(verify([run]))[damaged[0]])
    with pytest.raises(TicketlabError, match="damaged"):
        collect([run])
    with caplog.at_level(logging.WARNING, logger="ticketlab"):
        find(tiny_model_dir, run.parent, reviews)
    reports = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(reports) == 1 and "damaged" in reports[0] and "\n" not in reports[0], reports
    assert not [unit for unit, problems in verify([run]) if problems]
    assert_same_outputs(run, pristine)


def test_verify_says_what_is_damaged_and_exits_non_zero(run, capsys):
    assert main(["verify", str(run.parent)]) == 0
    assert capsys.readouterr().out.strip().endswith("units checked, 0 damaged")
    flip(run / "round_02" / "mask.safetensors")
    assert main(["verify", str(run)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == (
        f"{run / 'round_02'}: damaged, mask.safetensors does not match its digest; "
        "run the command that made it again to redo it"
    )
    assert lines[-1].endswith("1 damaged")


def test_readers_refuse_a_damaged_ticket_in_one_line(run, tmp_path, capsys):
    flip(run / "round_03" / "mask.safetensors")
    assert main(["apply", str(run), "--model", "splade-tiny", "--out", str(tmp_path / "applied")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ticketlab: error:") and "round_03 is damaged" in error and "\n" not in error
    assert not (tmp_path / "applied").exists()
    assert main(["report", str(run.parent), "--out", str(tmp_path / "report")]) == 2
    assert "damaged" in capsys.readouterr().err


def test_a_marker_cannot_vouch_for_a_file_outside_its_run(tmp_path):
    unit = tmp_path / "run" / "round_00"
    unit.mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (unit / "metrics.json").write_text("{}")
    seal(unit, {"round": 0})
    assert damage(unit) == {}
    record = json.loads((unit / MARKER).read_text())
    record["files"]["../../secret"] = "0" * 64
    (unit / MARKER).write_text(json.dumps(record))
    assert damage(unit) == {"../../secret": "outside the run"}


def test_leftovers_of_a_kill_after_complete_are_swept(tiny_model_dir, reviews, run):
    for folder in (run / "round_02", run / "branches" / "random" / "round_01"):
        (folder / "checkpoint.pt").write_bytes(b"left by a kill")
        (folder / ".mask.safetensors.tmp123").write_bytes(b"half")
    find(tiny_model_dir, run.parent, reviews)
    assert not list(run.rglob("checkpoint.pt")) and not list(run.rglob(".*.tmp*"))


def test_a_crafted_ticket_cannot_write_outside_out(run, tmp_path, capsys):
    mask, metadata = load_mask(run / "round_02" / "mask.safetensors")
    crafted = tmp_path / "crafted.safetensors"
    save_mask(crafted, mask, {**metadata, "task": "x/../../../../../OUTSIDE/t"})
    out = tmp_path / "out"
    assert main(["transfer", "--ticket", str(crafted), "--task", "rotten-tomatoes", "--out", str(out)]) == 2
    assert "does not name a ticketlab run" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.rglob("OUTSIDE"))
    save_mask(crafted, mask, {**metadata, "config_hash": "../../../x"})
    assert main(["transfer", "--ticket", str(crafted), "--task", "rotten-tomatoes", "--out", str(out)]) == 2
    assert not out.exists()


def test_a_second_writer_stops_in_one_line_naming_the_holder(tiny_model_dir, reviews, run, capsys):
    holder, release = hold_lock(run)
    try:
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        argv = [
            "find",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(reviews),
            "--out",
            str(run.parent),
            "--controls",
            "random",
            *[f"--{k.replace('_', '-')}={v}" for k, v in FAST.items() if k != "learning_rate"],
            "--lr",
            "1e-3",
        ]
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert f"is being written by process {holder.pid}" in error and "\n" not in error
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    finally:
        release.set()
        holder.join(TIMEOUT_S)
    assert not (run / ".lock.holder").exists()  # the holder ended: its name went with it
    find(tiny_model_dir, run.parent, reviews)  # the lock is free again
    assert not (run / ".lock.holder").exists()


def test_a_lock_is_reentrant_within_a_process(tmp_path):
    store = RunStore(tmp_path / "run")
    holder = store.path / ".lock.holder"
    with store.lock():
        with store.lock():
            assert holder.is_file()
        assert holder.is_file()  # the inner hold ends: the outer one still names its process
    assert not holder.exists()  # released: no name of a finished process stays behind
    with store.lock():
        pass


def test_discarded_weights_leave_the_marker_vouching_for_the_rest(pristine):
    store = RunStore(pristine)
    listed = json.loads((store.round_dir(1) / MARKER).read_text())["files"]
    assert "weights.safetensors" not in listed and not store.weights_path(1).exists()
    assert {"mask.safetensors", "head.safetensors", "metrics.json"} <= set(listed)
    assert "../rewind.safetensors" in json.loads((store.round_dir(0) / MARKER).read_text())["files"]
    assert all(not problems for _, problems in verify([pristine]))
    assert torch.equal(
        load_mask(store.mask_path(3))[0]["encoder.layer.0.attention.self.query.weight"],
        ticketlab.load_ticket(pristine)["encoder.layer.0.attention.self.query.weight"],
    )


def untimed(value):
    """A JSON value without its timings (keys ending in _time_s) and a marker's digest of metrics.json (they hold)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not k.endswith("_time_s") and k != "metrics.json"}
    return [untimed(v) for v in value] if isinstance(value, list) else value


def test_identical_runs_write_identical_files_but_their_timings(tiny_model_dir, reviews, pristine, tmp_path):
    again = find(tiny_model_dir, tmp_path, reviews).path
    files = sorted(str(path.relative_to(pristine)) for path in pristine.rglob("*") if path.is_file())
    assert files == sorted(str(path.relative_to(again)) for path in again.rglob("*") if path.is_file())
    differ = [name for name in files if (pristine / name).read_bytes() != (again / name).read_bytes()]
    assert all(name.endswith(("metrics.json", MARKER)) for name in differ)  # masks, heads, weights: the same bytes
    for name in differ:
        assert untimed(json.loads((pristine / name).read_text())) == untimed(json.loads((again / name).read_text()))
