"""The BERT-tickets paper's claims (Chen et al., NeurIPS 2020), each with what a set of runs measured for it: read
from the report's tables, so the claims table and the report can never disagree."""

from __future__ import annotations

import pandas as pd

from ..arms import ONE_SHOT, RANDOM, REINIT
from .tables import Tables

CLAIMS = {  # the paper's claim -> the arm of the gaps table that measures it (None: read elsewhere)
    "matching tickets exist at 40-90% sparsity (Table 2: SST-2 60%)": None,
    "IMP > random pruning at the same sparsity": RANDOM,
    "IMP > random re-initialization (the pre-trained weights matter)": REINIT,
    "one-shot magnitude pruning close to IMP at low sparsity, worse at high": ONE_SHOT,
    "MLM tickets transfer": None,
}


def claims_table(tables: Tables) -> pd.DataFrame:
    """One row per claim and task the runs can speak to: the claim, the task, and the measurement (a gap at a level:
    IMP minus the arm, mean ± std over seeds, positive where IMP is better; transfers: minus dense and minus random)."""
    rows = []
    claims = list(CLAIMS)
    for m in tables.matching.itertuples():
        levels = [
            f"{getattr(m, f'highest_{d}'):.1%}" if pd.notna(getattr(m, f"highest_{d}")) else "none"
            for d in ("paper", "strict")
        ]
        rows.append(
            {
                "claim": claims[0],
                "task": m.task,
                "measured": f"highest matching: {levels[0]} (paper), {levels[1]} (strict)",
            }
        )
    for claim, arm in CLAIMS.items():
        if arm is None:
            continue
        gaps = tables.gaps[(tables.gaps.arm == arm) & (tables.gaps.source.fillna("") == "")]
        for task, group in gaps.groupby("task", sort=False):
            cells = [f"{g.level:.1%}: {g.mean:+.4f} ± {g.std:.4f}" for g in group.itertuples()]
            rows.append({"claim": claim, "task": task, "measured": "; ".join(cells)})
    transfers = tables.transfer[(tables.transfer.source == "mlm") & (tables.transfer.target != "mlm")]
    for target, group in transfers.groupby("target", sort=False):
        cells = [
            f"{t.level:.1%}: {t.minus_dense:+.4f} vs dense, {_signed(t.minus_random)} vs random pruning"
            for t in group.itertuples()
        ]
        rows.append({"claim": claims[-1], "task": target, "measured": "; ".join(cells)})
    return pd.DataFrame(rows, columns=["claim", "task", "measured"])


def _signed(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:+.4f}"
