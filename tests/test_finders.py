"""The finders `find --method` names (ticketlab.lottery.finders): gradual magnitude pruning's cubic schedule and its
one pruning run, early-bird IMP's settle test, one-shot magnitude and Wanda as methods; each a run whose rounds are
tickets that the report reads as their own arm, with what each ticket cost to find."""

import logging

import pytest
import torch
from helpers import flip
from safetensors.torch import load_file

import ticketlab
from ticketlab.config import PruneConfig
from ticketlab.errors import TicketlabError
from ticketlab.lottery.early_bird import SettleWatch, draw_path
from ticketlab.lottery.gmp import GradualPruning, gmp_head_path, gmp_mask_path
from ticketlab.masks import load_mask, sparsity
from ticketlab.pruning import cubic_schedule, magnitude_prune, sparsity_schedule
from ticketlab.report.cost import unit_costs
from ticketlab.report.results import collect
from ticketlab.store import RunStore

FAST = dict(train_examples=96, batch_size=16, epochs=1, learning_rate=1e-3, seed=3)  # 6 steps a round


def nested(masks):
    return all(not (later[n] & ~earlier[n]).any() for earlier, later in zip(masks, masks[1:]) for n in later)


def test_the_cubic_schedule_prunes_zhu_and_guptas_sparsity_at_its_steps():
    # s_k = 0.9 (1 - (1 - k/5)^3) at steps 15, 30, ... 75 of 100 (pruning from step 0 to 75% of the run)
    assert cubic_schedule(100, 0.0, 0.75, 5, 0.9) == pytest.approx(
        {15: 0.4392, 30: 0.7056, 45: 0.8424, 60: 0.8928, 75: 0.9}
    )
    assert list(cubic_schedule(100, 0.2, 0.75, 5, 0.9)) == [31, 42, 53, 64, 75]
    # 5 prunings in 3 steps: coinciding steps keep the highest, the last reaches the target exactly
    assert cubic_schedule(3, 0.0, 1.0, 5, 0.5) == pytest.approx({1: 0.392, 2: 0.496, 3: 0.5})
    # from an initial sparsity s_i (N:M's constraint): s_k = 0.9 + (0.5 - 0.9)(1 - k/5)^3
    assert cubic_schedule(100, 0.0, 0.75, 5, 0.9, initial=0.5) == pytest.approx(
        {15: 0.6952, 30: 0.8136, 45: 0.8744, 60: 0.8968, 75: 0.9}
    )


def test_gradual_pruning_prunes_exact_counts_at_every_step_and_takes_every_level_it_crosses():
    torch.manual_seed(0)
    weights = {"a": torch.nn.Parameter(torch.randn(8, 10)), "b": torch.nn.Parameter(torch.randn(5, 6))}
    total = 110
    schedule = cubic_schedule(6, 0.0, 1.0, 3, 0.3)  # steps 2, 4, 6: 0.2111, 0.2889, 0.3
    levels = dict(enumerate(sparsity_schedule("linear", 0.1, 0.3)))  # 0.1, 0.2, 0.3
    del levels[0]
    now = []  # the steps trained so far: the "head" the hook keeps with each mask
    prune = lambda mask, level: magnitude_prune(weights, mask, level)  # noqa: E731
    hook = GradualPruning(weights, schedule, levels, prune, lambda: {"step": torch.tensor(len(now))})
    seen = []
    for step in range(1, 7):
        now.append(step)
        with torch.no_grad():
            for w in weights.values():
                w.add_(torch.randn(w.shape))  # training moves the weights; pruned ones come back to zero
        hook.after_step(step, None)
        pruned = sum(int((~m).sum()) for m in hook.mask.values())
        assert pruned == round(schedule.get(step, seen[-1] / total if seen else 0.0) * total)
        assert all(bool((w[~hook.mask[n]] == 0).all()) for n, w in weights.items())
        seen.append(pruned)
    assert seen == [0, 23, 23, 32, 32, 33]
    assert sorted(hook.found) == [1, 2, 3]
    assert [sum(int((~m).sum()) for m in hook.found[r].values()) for r in (1, 2, 3)] == [11, 22, 33]
    assert nested([hook.found[1], hook.found[2], hook.mask]) and hook.found[3] is hook.mask
    assert {r: int(head["step"]) for r, head in hook.heads.items()} == {1: 2, 2: 2, 3: 6}  # each with its mask's step


def scripted_watch(draws, stop, window=2, threshold=0.2):
    """A SettleWatch whose draws are `draws` in turn (masks of 10 weights given as the pruned positions); its "head"
    is the number of draws made so far."""
    masks, drawn = [{"w": torch.tensor([i not in pruned for i in range(10)])} for pruned in draws], []

    def draw():
        drawn.append(masks[len(drawn)])
        return drawn[-1]

    settings = PruneConfig(draw_every=2, settle_window=window, settle_threshold=threshold)
    return SettleWatch(draw, lambda: {"draws": torch.tensor(len(drawn))}, settings, stop)


def test_early_bird_stops_a_round_once_its_draws_settle():
    # the largest distance to the previous 2 draws: -, - (the window fills), 0.4, 0.4, 0.2, 0.0: settled (< 0.2) at
    # the 6th draw, step 12
    watch = scripted_watch([{0, 1}, {2, 3}, {4, 5}, {4, 6}, {4, 6}, {4, 6}, {8, 9}], stop=True)
    steps = 0
    while not watch.should_stop():
        steps += 1
        watch.after_step(steps, None)
    assert steps == 12
    mask, head, draw = watch.result(steps)
    assert (~mask["w"]).nonzero().flatten().tolist() == [4, 6] and int(head["draws"]) == 6  # the head of that step
    assert draw == {"step": 12, "settled": True, "distances": [None, None, 0.4, 0.4, 0.2, 0.0]}
    assert watch.should_stop()  # the round only drew the next mask: its record says search_only


def test_early_bird_never_stops_on_draws_that_keep_changing_and_then_takes_the_final_draw():
    watch = scripted_watch([{i, i + 1} for i in range(0, 8)] + [{8, 9}], stop=True)
    for step in range(1, 17):
        watch.after_step(step, None)
        assert not watch.should_stop()
    mask, head, draw = watch.result(16)
    assert (~mask["w"]).nonzero().flatten().tolist() == [8, 9]  # the draw of the weights the round ended with
    assert int(head["draws"]) == 9  # and their head
    assert draw["settled"] is False and draw["step"] == 16
    assert not watch.should_stop()  # it trained in full: a ticket like any (evaluated, reported)


def test_a_watch_that_does_not_stop_keeps_the_settled_draw_while_the_round_trains_on():
    watch = scripted_watch([{0, 1}, {0, 1}, {0, 1}, {5, 6}], stop=False)
    for step in range(1, 11):
        watch.after_step(step, None)
        assert not watch.should_stop()
    mask, head, draw = watch.result(10)
    assert (~mask["w"]).nonzero().flatten().tolist() == [0, 1] and int(head["draws"]) == 3
    assert draw == {"step": 6, "settled": True, "distances": [None, None, 0.0]}


def test_a_gmp_run_trains_each_crossed_mask_from_theta0_as_a_round(tiny_model_dir, reviews, tmp_path, caplog):
    run = dict(
        model=str(tiny_model_dir),
        data=str(reviews),
        sparsity=0.3,
        out=tmp_path,
        finder="gmp",
        gmp_end=1.0,
        gmp_prunings=3,
        **FAST,
    )
    result = ticketlab.find(**run)
    store = RunStore(result.path)
    assert result.path.name.startswith("rotten-tomatoes_tiny-bert") and "_gmp-linear-0.3_" in result.path.name
    search = store.searches().metrics(0)
    assert search["steps"] == 6 and search["schedule"] == pytest.approx({"2": 0.2111111, "4": 0.2888889, "6": 0.3})
    assert search["sparsity"] == pytest.approx(0.3, abs=1e-3) and search["cost"]["train_flops"] > 0
    masks = [load_mask(store.mask_path(r))[0] for r in range(4)]
    assert [round(sparsity(m), 3) for m in masks] == [0.0, 0.1, 0.2, 0.3] and nested(masks)
    for r in (1, 2, 3):
        assert all(torch.equal(masks[r][n], m) for n, m in load_mask(gmp_mask_path(store, r))[0].items())
        taken, head = load_file(gmp_head_path(store, r)), load_file(store.head_path(r))  # the head of the mask's step
        assert taken.keys() == head.keys() and all(torch.equal(taken[k], head[k]) for k in head)
    dense_head = load_file(store.weights_path(0))
    assert any(not torch.equal(dense_head[k], v) for k, v in load_file(store.head_path(3)).items())
    results = collect([tmp_path])
    assert [(x.arm, x.round) for x in results] == [("imp", 0), ("gmp", 1), ("gmp", 2), ("gmp", 3)]
    costs = unit_costs(results)
    assert list(costs.find_flops) == [0.0, *[search["cost"]["train_flops"]] * 3]
    # a damaged pruning run is redone by the next find, though every round is complete
    flip(gmp_mask_path(store, 2))
    caplog.set_level(logging.WARNING)
    caplog.clear()
    ticketlab.find(**run)
    assert [r.getMessage() for r in caplog.records] == [
        f"{store.searches().round_dir(0)} is damaged: mask_02.safetensors does not match its digest; redoing it"
    ]
    drawn = load_mask(gmp_mask_path(store, 2))[0]
    assert all(torch.equal(drawn[n], masks[2][n]) for n in drawn) and not store.searches().damage(0)


def test_one_shot_as_a_method_draws_the_one_shot_controls_masks(tiny_model_dir, reviews, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    imp = ticketlab.find(
        str(tiny_model_dir), data=str(reviews), sparsity=0.2, out=tmp_path, controls=["one-shot"], **FAST
    )
    method = ticketlab.find(
        str(tiny_model_dir), data=str(reviews), sparsity=0.2, out=tmp_path, finder="one-shot", **FAST
    )
    for r in (1, 2):
        control = load_mask(RunStore(imp.path).branch("one-shot").mask_path(r))[0]
        drawn = load_mask(RunStore(method.path).mask_path(r))[0]
        assert all(torch.equal(control[n], drawn[n]) for n in control)
    assert method.rounds[0]["dev"] == imp.rounds[0]["dev"]  # the same dense model: the report reads it once
    assert f"round 0: the dense model {imp.path.name} trained, copied" in caplog.text  # rather than trained again
    dense = [RunStore(run.path).weights_path(0).read_bytes() for run in (imp, method)]
    assert dense[0] == dense[1] and load_mask(RunStore(method.path).mask_path(0))[1]["config_hash"] in method.path.name
    arms = [(x.arm, x.round) for x in collect([tmp_path])]
    assert arms.count(("imp", 0)) == 1 and ("one-shot", 2) in arms


def test_a_wanda_run_prunes_every_output_row_to_the_level(tiny_model_dir, reviews, tmp_path, caplog):
    result = ticketlab.find(
        str(tiny_model_dir),
        data=str(reviews),
        sparsity=0.75,
        out=tmp_path,
        finder="wanda",
        schedule="geometric",
        rate=0.5,
        **FAST,
    )
    for r, level in ((1, 0.5), (2, 0.75)):
        mask = load_mask(RunStore(result.path).mask_path(r))[0]
        for name, kept in mask.items():
            rows = kept.reshape(kept.shape[0], -1)
            assert (rows.sum(dim=1) == rows.shape[1] - round(level * rows.shape[1])).all(), name
    assert [x.arm for x in collect([tmp_path])] == ["imp", "wanda", "wanda"]
    # the 96 training examples, fewer than the 256 asked for, said once: the dense model is calibrated once a run
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("wanda: calibrating")]
    assert said == ["wanda: calibrating on all 96 training examples (--calibration-examples 256)"]


def test_early_bird_final_only_trains_only_the_target_in_full_and_draws_what_full_rounds_draw(
    tiny_model_dir, reviews, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    ticketlab.find(str(tiny_model_dir), data=str(reviews), sparsity=0.1, out=tmp_path, **FAST)  # the same dense model
    early_bird = dict(finder="early-bird", draw_every=1, settle_window=1, settle_threshold=0.5, **FAST)
    result = ticketlab.find(
        str(tiny_model_dir),
        data=str(reviews),
        sparsity=0.3,
        out=tmp_path,
        final_only=True,
        controls=["random"],
        **early_bird,
    )
    full = ticketlab.find(str(tiny_model_dir), data=str(reviews), sparsity=0.3, out=tmp_path, **early_bird)
    store, full_store = RunStore(result.path), RunStore(full.path)
    dense, searching, _, target = result.rounds
    assert "copied" not in caplog.text  # its round 0 draws the next mask too: it trains, whatever runs lie beside it
    assert dense["draw"]["settled"] and "dev" in dense and dense["steps"] == 6  # the baseline trains in full
    assert searching["search_only"] and searching["steps"] == searching["draw"]["step"] == 2 and "dev" not in searching
    assert "draw" not in target and target["steps"] == 6 and "dev" in target
    for r in (1, 2, 3):
        drawn, mask = load_mask(draw_path(store, r - 1))[0], load_mask(store.mask_path(r))[0]
        assert all(torch.equal(drawn[n], mask[n]) for n in mask)
    # stopped where its draw settled or trained on, a round draws the same mask with the head of that step: every
    # round starts alike (the head files carry no metadata, so their bytes compare)
    assert [x["draw"] for x in full.rounds[:3]] == [x["draw"] for x in result.rounds[:3]]
    assert all(x["steps"] == 6 and "dev" in x for x in full.rounds)
    for r in range(4):
        mask, same = load_mask(store.mask_path(r))[0], load_mask(full_store.mask_path(r))[0]
        assert all(torch.equal(mask[n], same[n]) for n in mask)
        assert store.head_path(r).read_bytes() == full_store.head_path(r).read_bytes()
    assert store.branch("random").completed_rounds() == [3]  # the rounds that only drew a mask have no controls
    results = collect([result.path])
    assert [(x.arm, x.round) for x in results] == [("imp", 0), ("early-bird", 3), ("random", 3)]
    costs = unit_costs(results)
    spent = [
        store.metrics(r)["cost"]["train_flops"] * store.metrics(r)["draw"]["step"] / store.metrics(r)["steps"]
        for r in range(3)
    ]
    assert costs.find_flops[1] == pytest.approx(sum(spent)) and spent[0] < dense["cost"]["train_flops"]
    full_results = collect([full.path])
    assert [(x.arm, x.round) for x in full_results][-1] == ("early-bird", 3)
    assert unit_costs(full_results).find_flops[3] == pytest.approx(costs.find_flops[1])  # the ledger charges alike


def test_an_unknown_method_or_bad_finder_setting_is_one_line(tiny_model_dir, reviews, tmp_path):
    with pytest.raises(TicketlabError, match="unknown ticket finder 'lth'"):
        ticketlab.find(str(tiny_model_dir), data=str(reviews), out=tmp_path, finder="lth", **FAST)
    with pytest.raises(TicketlabError, match=r"gmp_end must be a finite number in \(0.5, 1\]"):
        ticketlab.find(
            str(tiny_model_dir), data=str(reviews), out=tmp_path, finder="gmp", gmp_start=0.5, gmp_end=0.5, **FAST
        )
    with pytest.raises(TicketlabError, match=r"settle_threshold must be a finite number in \(0, 1\), got 1"):
        ticketlab.find(str(tiny_model_dir), data=str(reviews), out=tmp_path, finder="early-bird", settle_threshold=1)
    with pytest.raises(TicketlabError, match="^gmp_end is a setting of the gmp finder, and this run's is imp$"):
        ticketlab.find(str(tiny_model_dir), data=str(reviews), out=tmp_path, gmp_end=0.9, **FAST)  # a new name else
    never = r"draws cannot settle before step 60 \(--draw-every 10 × \(--settle-window 5 \+ 1\)\), past the 6"
    with pytest.raises(TicketlabError, match=never):
        ticketlab.find(str(tiny_model_dir), data=str(reviews), out=tmp_path, finder="early-bird", **FAST)  # 6 steps
    assert not list(tmp_path.iterdir())
