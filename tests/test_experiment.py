"""Recipes and the report and experiment verbs (the report from a stored fixture: no training)."""

from __future__ import annotations

import pytest
from helpers import run_cli
from store_fixture import write_store

from ticketlab.errors import TicketlabError
from ticketlab.experiment import run_experiment
from ticketlab.plan import recipe_units
from ticketlab.recipe import RECIPES, Recipe, load_recipe, presets
from ticketlab.store import RunStore


def test_every_recipe_loads_and_names_known_tasks_and_controls():
    assert "small" in presets() and {p.stem for p in RECIPES.glob("*.yaml")} == set(presets())
    small = load_recipe("small")
    assert small.model == "splade-tiny" and set(small.tasks) == {"rotten-tomatoes", "mlm"} and small.seeds == 3
    assert small.transfer in (0.2, 0.4, 0.6, 0.8) and len(small.controls) == 7
    minilm = load_recipe("minilm")
    assert minilm.model == "minilm-l6" and minilm.seeds == 3 and minilm.prune["sparsity"] >= 0.8
    assert set(minilm.controls) >= {"random", "one-shot", "reinit"} and len(minilm.transfer_levels()) == 3
    for name in presets():
        load_recipe(name)


def test_the_minilm_full_preset_runs_imp_at_the_papers_pace_and_its_controls_at_three_sparsities(tmp_path):
    full = load_recipe("minilm-full")
    assert full.tasks == {"rotten-tomatoes": {"epochs": 2, "learning_rate": 1e-4, "precision": "auto"}}
    assert full.prune == {"sparsity": 0.9, "schedule": "linear", "rate": 0.1} and full.seeds == 3
    units = recipe_units(full, tmp_path, range(3), 100)
    controls = [unit for unit in units if unit.kwargs.get("controls")]
    assert len(units) == 12 and {tuple(unit.kwargs["controls_at"]) for unit in controls} == {(0.5, 0.7, 0.9)}
    assert all("train_examples" not in unit.kwargs for unit in units)  # the whole training split


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: splade-tiny\ntasks: {sst3: {}}\n", "unknown task 'sst3'"),
        ("model: splade-tiny\ntasks: {mlm: {}}\ncontrols: [lottery]\n", "unknown control experiment 'lottery'"),
        ("model: splade-tiny\ntasks: {mlm: {}}\nseed: 3\n", "unknown setting 'seed'"),
        ("model: splade-tiny\n", "needs `model` and a mapping `tasks`"),
        ("model: [unclosed\n", "is not valid YAML"),
        ("model: splade-tiny\ntasks: {mlm: {}}\nseeds: 0\n", "seeds must be at least 1"),
        (
            "model: splade-tiny\ntasks: {mlm: {}}\ncontrols: [random]\ncontrols_at: [0.55]\n",
            "controls_at 0.55 is not a sparsity of the run's schedule: 0.1, 0.2",
        ),
        (
            "model: splade-tiny\ntasks: {mlm: {}}\ntransfer: [0.5, 1.5]\n",
            "transfer is a sparsity in \\(0, 1\\) or a list",
        ),
        ("model: splade-tiny\ntasks: {mlm: {}}\ntransfer: [high]\n", "transfer must be"),
        (
            "model: splade-tiny\ntasks: {mlm: {}}\nearlybert: {hedas: 0.3}\n",
            "earlybert: unknown setting 'hedas'; known: heads, ffn",
        ),
        ("model: splade-tiny\ntasks: {mlm: {}}\nearlybert: {heads: 2}\n", "--heads is the fraction pruned"),
    ],
)
def test_a_bad_recipe_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(TicketlabError, match=message):
        load_recipe(path)


def test_an_unknown_preset_lists_the_presets():
    done = run_cli("experiment", "--preset", "huge", fresh=True)  # as a shell starts it: nothing on import either
    assert (
        done.returncode == 2 and done.stderr.count("\n") == 1 and "presets: " in done.stderr and "small" in done.stderr
    )


def test_report_verb_writes_markdown_csv_and_plots_from_the_store_alone(tmp_path):
    runs = write_store(tmp_path / "runs")
    done = run_cli("report", str(runs), "--metric", "mlm=loss")
    assert done.returncode == 0, done.stderr
    report = runs / "report"
    assert done.stdout.strip().endswith(str(report / "report.md"))
    assert "Highest matching sparsity" in done.stdout
    for name in ("report.md", "results.csv", "matching.csv", "table2.csv", "transfer.csv"):
        assert (report / name).stat().st_size > 0
    pngs = sorted(p.name for p in report.rglob("*.png"))
    assert any(n.startswith("curve_") for n in pngs) and any(n.startswith("transfer_") for n in pngs)
    assert all(p in (report / "report.md").read_text() for p in pngs)


def test_report_of_a_folder_without_runs_is_one_clear_error(tmp_path):
    done = run_cli("report", str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "neither a ticketlab run folder" in done.stderr


def test_a_recipe_with_earlybert_runs_it_beside_imp_on_the_same_dense_model(tiny_model_dir, tmp_path):
    recipe = Recipe(
        name="tiny",
        model=str(tiny_model_dir),
        tasks={"rotten-tomatoes": {"train_examples": 32, "batch_size": 16, "epochs": 2}},
        prune={"sparsity": 0.2, "rate": 0.2},
        earlybert={"draw_every": 1, "window": 2},
    )
    report = run_experiment(recipe, tmp_path / "runs")
    (run,) = [p.parent for p in (tmp_path / "runs").glob("*/config.json")]
    store = RunStore.open(run)
    assert store.completed_rounds() == [0, 1]
    assert sorted(name.rsplit("-", 1)[0] for name in store.branches()) == ["earlybert", "earlybert-random"]
    assert all(store.branch(name).is_complete(0) for name in store.branches())
    assert (report.parent / "earlybert.csv").stat().st_size > 0 and "## EarlyBERT" in report.read_text()
