"""Demonstration data: oracle datagen writes readable Parquet; the dataset splits by episode."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from embodied.commands.config import compose, validated
from embodied.core.errors import ConfigError
from embodied.core.plan import parse_plan
from embodied.data.dataset import COLUMNS, OPTIONAL_COLUMNS, DatasetError, PlanDataset, decode_image, encode_png
from embodied.data.synthetic import write_synthetic


def test_png_round_trip():
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_png(img)), img)


def test_dataset_holds_out_whole_episodes(tmp_path):
    write_synthetic(tmp_path, 60, image_size=16)
    train, val = PlanDataset(tmp_path, "train", 0.2), PlanDataset(tmp_path, "val", 0.2)
    assert len(train) + len(val) == 60 and 0 < len(val) < 30
    train_eps = {train._cols["episode"][i] for i in train._rows}
    val_eps = {val._cols["episode"][i] for i in val._rows}
    assert not train_eps & val_eps
    ex = train[0]
    assert ex.observation.frames["front"].shape == (16, 16, 3) and ex.observation.state.shape == (15,)
    parse_plan(ex.target)
    assert all(isinstance(t, str) for t in train.texts())


def test_dataset_errors_are_named(tmp_path):
    with pytest.raises(ConfigError, match="datagen"):
        PlanDataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no \\*.parquet"):
        PlanDataset(tmp_path)
    pq.write_table(__import__("pyarrow").table({"task": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(DatasetError, match="lacks columns"):
        PlanDataset(tmp_path)


def test_datagen_writes_readable_shards_and_resumes(tmp_path):
    from embodied.commands.datagen import DatagenConfig, generate

    cfg = validated(compose("datagen", [f"out={tmp_path}", "episodes=2", "episodes_per_shard=1", "perturb=1.0",
                                        "tasks=put_in_container", "progress=false"]), DatagenConfig)
    summary = generate(cfg)
    assert summary["shards_written"] == 2 and summary["episodes"] == 2 and summary["examples_per_minute"] > 0
    shards = sorted(tmp_path.glob("*.parquet"))
    assert len(shards) == 2
    table = pq.read_table(shards[0])
    assert tuple(table.column_names) == COLUMNS + OPTIONAL_COLUMNS
    rows = table.to_pylist()
    assert rows[0]["step"] == 0 and rows[0]["history"] == [] and rows[0]["task"] == "put_in_container"
    for r in rows:
        steps = parse_plan(r["target"])
        assert steps[-1].is_done
        img = decode_image(r["frames"][0])
        assert img.shape == (128, 128, 3) and r["cameras"] == ["front"] and len(r["state"]) == 15
        # the scene graph: one entry per detection; objects placed somewhere, containers nowhere
        assert len(r["relations"]) == len(r["detections"])
        for name, rel in zip(r["detections"], r["relations"]):
            if name == "tray" or name.endswith(" bin"):
                assert rel == ""
            else:
                assert rel == "on table" or rel.startswith(("on ", "in ")), (name, rel)
    ds = PlanDataset(tmp_path, "all")
    assert len(ds) == summary["rows"]
    again = generate(cfg)  # resumable: finished shards are skipped
    assert again["shards_written"] == 0 and again["shards_skipped"] == 2
    assert json.loads((tmp_path / "datagen_summary.json").read_text())["shards_skipped"] == 2


def test_datagen_config_errors():
    from embodied.commands.datagen import DatagenConfig, generate

    with pytest.raises(ConfigError, match="unknown task families"):
        generate(DatagenConfig(tasks="juggle", out="/tmp/never"))
    with pytest.raises(ConfigError, match="level"):
        generate(DatagenConfig(level="L9", out="/tmp/never"))
    with pytest.raises(ConfigError, match="unknown task families"):  # the list form is checked too
        generate(validated(compose("datagen", ["tasks=[stack,juggle]", "out=/tmp/never"]), DatagenConfig))
    with pytest.raises(ConfigError, match="empty"):
        generate(DatagenConfig(tasks=[], out="/tmp/never"))


def test_datagen_tasks_as_list_or_string():
    from embodied.commands.datagen import DatagenConfig, plan_units

    as_list = validated(compose("datagen", ["tasks=[stack,tower]", "episodes=2", "episodes_per_shard=1"]), DatagenConfig)
    as_text = DatagenConfig(tasks="stack, tower", episodes=2, episodes_per_shard=1)
    assert [u.family for u in plan_units(as_list)] == [u.family for u in plan_units(as_text)] == ["stack", "tower"] * 2
    with pytest.raises(ConfigError):
        compose("datagen", ["episode=3"])


@pytest.mark.slow
def test_datagen_all_families_two_workers(tmp_path):
    from embodied.commands.datagen import DatagenConfig, generate

    summary = generate(DatagenConfig(out=str(tmp_path), episodes=2, episodes_per_shard=2, workers=2, progress=False))
    assert summary["shards_written"] == 10 and summary["oracle_success_rate"] >= 0.8
    ds = PlanDataset(tmp_path, "all")
    assert {ds[i].task for i in range(len(ds))} == {p.name.split("-")[0] for p in tmp_path.glob("*.parquet")}


def test_shards_without_relations_read_as_no_relations(tmp_path):
    """Shards written before the relations column existed still load."""
    write_synthetic(tmp_path, 4)
    for p in tmp_path.glob("*.parquet"):
        t = pq.read_table(p)
        pq.write_table(t.drop_columns(["relations"]) if "relations" in t.column_names else t, p)
        assert "relations" not in pq.read_table(p).column_names
    ds = PlanDataset(tmp_path, "all")
    assert len(ds) == 4 and all(ds[i].observation.relations == {} for i in range(4))
