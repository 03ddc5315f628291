"""The recipe ablation's bookkeeping: row settings, merged records, the table notebook 02 shows."""

from __future__ import annotations

import pytest

from repro import ablation
from repro.config import get_profile


def test_rows_change_only_their_settings():
    base = get_profile("default").stylex
    landed = ablation.row_config(base, "landed")
    assert landed.losses.r1_gamma == 10.0 and landed.losses.pl_weight == 2.0 and landed.losses.lpips == 0.0
    assert landed.ema_rampup is None
    assert (landed.channels, landed.batch_size, landed.lr) == (base.channels, base.batch_size, base.lr)
    for row in ablation.ROWS:
        ablation.row_config(base, row)  # every row's settings exist
    with pytest.raises(ValueError, match="unknown ablation row"):
        ablation.row_config(base, "nope")


def test_the_default_recipe_is_one_of_the_rows():
    """The profile's settings are an ablation row, so notebook 02's table justifies them."""
    base = get_profile("default").stylex
    assert any(ablation.row_config(base, row) == base for row, settings in ablation.ROWS.items()
               if "iterations" not in settings)  # not the untrained control


def test_saved_rows_merge_by_task_and_row(tmp_path):
    path = tmp_path / "ablation.json"
    ablation.save_rows([{"task": "t", "row": "r1-0.2", "l1": 0.3}], path)
    ablation.save_rows([{"task": "t", "row": "landed", "l1": 0.5}, {"task": "t", "row": "r1-0.2", "l1": 0.2}], path)
    table = ablation.ablation_table(path, task="t")
    assert [r["row"] for r in table] == ["landed", "r1-0.2"]  # the order of ROWS
    assert table[1]["l1"] == 0.2 and set(table[0]) == set(ablation.ROW_COLUMNS)
    assert ablation.ablation_table(tmp_path / "missing.json") == []
