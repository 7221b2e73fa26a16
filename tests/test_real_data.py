"""Real data through the study: a data spec where a country was, crops for training, whole frames for mAP.

The "real" data here is the sign world exported in COCO form at 192-pixel frames (twice the ci
detector's input, so evaluation really tiles); the real GTSDB frames in ../shared are used where
present, for resolving only (training on them takes minutes).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlutils.data.synth import generate
from tlutils.experiment import RunConfig, load_per_class, resolve, run
from tlutils.experiment.datasets import load_split
from tlutils.experiment.store import read_classes
from tlutils.pretrain import PretrainConfig

pytestmark = pytest.mark.slow

GTSDB_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "gtsdb-train"


@pytest.fixture(scope="module")
def coco_export(tmp_path_factory) -> Path:
    """24 German sign-world frames of 192 px as a COCO dataset: ``annotations.json`` + PNGs."""
    folder = tmp_path_factory.mktemp("coco_germany")
    generate("germany", 24, folder, seed=5, image_size=192)
    return folder / "annotations.json"


@pytest.mark.backends  # also on JAX in make test: crops, tiled whole-frame mAP, per-class AP
def test_a_coco_dataset_is_a_target_like_a_country(coco_export, tmp_path):
    config = RunConfig(profile="ci", target_data=f"coco:{coco_export}", strategy="head_only", num_target_images=10)
    resolved = resolve(config)
    assert resolved.data == f"coco:{coco_export}" and "stratified" in resolved.data_split
    rows = run(config, tmp_path / "results", data_dir=tmp_path / "data", verbose=0, tensorboard=False)
    assert rows["epoch"].tolist() == [0, 1, 2, 3]
    assert set(rows["data"]) == {resolved.data} and set(rows["data_fingerprint"]) == {resolved.data_fingerprint}
    # whole-frame mAP at the start and the end, val loss (on fixed val crops) every epoch
    finite = rows["val_map50"].map(math.isfinite).tolist()
    assert finite == [True, False, False, True]
    assert np.isfinite(rows["val_loss"]).all() and math.isfinite(rows["coco_map"].iloc[-1])
    # mAP by object size on whole frames with the final scores; 192-px frames hold small and medium signs
    assert rows["map50_small"].map(math.isfinite).tolist() == [True, False, False, True]
    assert rows[["map50_small", "map50_medium", "map50_large"]].iloc[-1].between(0, 1).sum() >= 1
    saved = json.loads((tmp_path / "results" / rows["checkpoint"].iloc[-1]).parent.joinpath("config.json").read_text())
    assert saved["data"] == resolved.data and saved["data_split"] == resolved.data_split
    # AP@0.5 per class on whole frames at epoch 0 and 3, by name; its mean over classes with ground truth is mAP
    per_class = load_per_class(tmp_path / "results", rows["run_key"].iloc[0])
    classes = read_classes((tmp_path / "results" / rows["checkpoint"].iloc[-1]).parent)
    assert sorted(set(per_class["epoch"])) == [0, 3]
    assert per_class.query("epoch == 3")["class"].tolist() == list(classes.values())
    for epoch, scored in per_class.groupby("epoch"):
        counted = scored[scored["num_ground_truths"] > 0]
        assert counted["ap50"].mean() == pytest.approx(rows.set_index("epoch").loc[epoch, "val_map50"], abs=1e-9)


def test_transfer_runs_of_one_target_and_seed_share_their_zero_shot_evaluation(coco_export, tmp_path):
    """The zero-shot score depends on the transferred weights and the val frames only: the second
    strategy reads it from ``<results>/scores`` instead of tiling the frames again."""
    results, data = tmp_path / "results", tmp_path / "data"
    rows = {strategy: run(RunConfig(profile="ci", target_data=f"coco:{coco_export}", strategy=strategy,
                                    num_target_images=10), results, data_dir=data, verbose=0, tensorboard=False)
            for strategy in ("head_only", "finetune")}
    first, second = (rows[name].iloc[0] for name in ("head_only", "finetune"))
    columns = ["val_map50", "coco_map", "map50_small", "map50_medium", "map50_large"]
    assert first[columns].equals(second[columns])
    per_class = {name: load_per_class(results, rows[name]["run_key"].iloc[0]).query("epoch == 0")
                 for name in ("head_only", "finetune")}  # the cache keeps the per-class scores too
    numbers = ["class", "ap50", "num_ground_truths", "ap50_small", "ap50_medium", "ap50_large"]
    pd.testing.assert_frame_equal(per_class["head_only"][numbers], per_class["finetune"][numbers])
    # one zero-shot score and each run's final one, and the zero-shot of the sign-world source run
    assert len(list((results / "scores").glob("*.json"))) == 4


def test_a_real_target_is_scored_on_its_own_test_frames_tiled(coco_export, tmp_path):
    """evaluate_test on real data: the test split (disjoint from train and val) scored whole, by tiled
    inference, before training and after the last epoch."""
    spec = f"coco:{coco_export}"
    names = {split: {record.image_path for record in load_split(spec, split, "name", 10_000, 96, None)}
             for split in ("train", "val", "test")}
    assert names["test"] and not names["test"] & (names["train"] | names["val"])
    config = RunConfig(profile="ci", target_data=spec, strategy="head_only", num_target_images=10, evaluate_test=True)
    rows = run(config, tmp_path / "results", data_dir=tmp_path / "data", verbose=0, tensorboard=False)
    scored = rows["test_map50"].map(math.isfinite).tolist()
    assert scored == [True, False, False, True] and rows["test_map50"].dropna().between(0, 1).all()


def test_the_run_key_follows_the_data_not_its_name(coco_export, tmp_path):
    """A changed box is other data (another key); the same file elsewhere is the same data."""
    config = RunConfig(profile="ci", target_data=f"coco:{coco_export}", strategy="finetune", num_target_images=10)
    document = json.loads(coco_export.read_text())
    moved = tmp_path / "moved" / "annotations.json"
    moved.parent.mkdir()
    for image in document["images"]:
        (moved.parent / image["file_name"]).write_bytes((coco_export.parent / image["file_name"]).read_bytes())
    moved.write_bytes(coco_export.read_bytes())
    same = resolve(config.replace(target_data=f"coco:{moved}"))
    assert same.data_fingerprint == resolve(config).data_fingerprint
    # moved data keeps its runs (the key spells the spec without its path); config.json keeps the path
    assert same.key == resolve(config).key and same.data == f"coco:{moved}" != resolve(config).data
    # and its pretrained starts (a detector pretrained on it keys its data the same way)
    pretrain = PretrainConfig(kind="detector", profile="ci", data=(f"coco:{coco_export}",))
    moved_pretrain = PretrainConfig(kind="detector", profile="ci", data=(f"coco:{moved}",))
    assert moved_pretrain.key == pretrain.key and moved_pretrain.resolve().data != pretrain.resolve().data
    document["annotations"][0]["bbox"][0] += 1.0
    moved.write_text(json.dumps(document))
    changed = resolve(config.replace(target_data=f"coco:{moved}"))
    assert changed.data_fingerprint != same.data_fingerprint and changed.key != same.key


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"target_data": "cocoa:/somewhere.json"}, "target_data: bad data spec .* unknown format 'cocoa'"),
    ({"source_data": "synth:atlantis"}, "source_data: bad data spec .* unknown country 'atlantis'"),
    ({"target_data": "germany", "classes": "colour"}, "classes must be one of"),
    ({"strategy": "classifier"}, "start of the source stage"),
])
def test_a_bad_data_spec_names_the_part_that_is_wrong(fields, fragment):
    with pytest.raises(ValueError, match=fragment):
        RunConfig(num_target_images=10, **fields)


def test_more_target_images_than_the_train_split_holds_is_an_error(coco_export):
    with pytest.raises(ValueError, match="train split has"):
        resolve(RunConfig(profile="ci", target_data=f"coco:{coco_export}", num_target_images=500))


def test_superclass_mode_relabels_the_data_to_four_classes(tmp_path):
    pool = load_split("synth:germany", "train", "superclass", 16, 64, tmp_path)
    assert pool.classes == {1: "prohibitory", 2: "danger", 3: "mandatory", 4: "other"}
    assert resolve(RunConfig(profile="ci", num_target_images=10, classes="superclass")).classes == "superclass"


@pytest.mark.skipif(not GTSDB_TRAIN.is_dir(), reason="../shared/data/gtsdb-train is not here")
def test_real_gtsdb_frames_as_source_and_a_sign_world_export_as_target(coco_export):
    spec = f"gtsdb:{GTSDB_TRAIN},on_error=skip"
    config = RunConfig(profile="ci", source_data=spec, target_data=f"coco:{coco_export}", strategy="finetune",
                       num_target_images=10)
    source = resolve(RunConfig(stage="source", source_data=spec, profile="ci"))
    assert "no test frames (00600-00899) in the folder" in source.data_split  # the 600 training frames only
    held = [len(load_split(spec, split, "name", 10_000, 96, None)) for split in ("val", "test")]
    assert source.pool_size + sum(held) == 600 and min(held) > 0  # test carved from them, for evaluate_test
    assert resolve(config).source_run_key == source.key


def test_the_sweep_command_takes_data_specs(coco_export):
    from tlutils.cli import build_parser
    from tlutils.experiment.sweeps import cli_grid

    args = build_parser().parse_args(["sweep", "--profile", "ci", "--target-data", f"coco:{coco_export}",
                                      "--source-data", "synth:belgium", "--classes", "superclass",
                                      "--strategies", "head_only", "--num-target-images", "10"])
    grid, base = cli_grid(args)
    assert grid["target_data"] == [f"coco:{coco_export}"]
    assert (base.source_data, base.classes) == ("synth:belgium", "superclass")


@pytest.mark.parametrize(("spec", "expected"), [
    ("synth:germany", "germany"), ("gtsdb:data/FullIJCNN2013", "gtsdb-FullIJCNN2013"),
    ("yolo:export/images", "yolo-export"), ("coco:runs/coco_germany/annotations.json", "coco-coco_germany"),
])
def test_the_country_column_names_the_data_shortly(spec, expected):
    from tlutils.experiment.datasets import label

    assert label(spec) == expected


def test_superclass_mode_reads_superclasses_from_class_names_where_a_format_has_none(tmp_path):
    """YOLO files name classes only: the synonym table gives their superclasses, no frame is dropped."""
    from tlutils.data import load_coco
    from tlutils.data.classes import relabel_by_superclass
    from tlutils.data.export import export_yolo

    generate("germany", 6, tmp_path / "coco", seed=3, image_size=96)
    coco = load_coco(tmp_path / "coco" / "annotations.json")
    export_yolo(coco, tmp_path / "yolo")
    yolo = load_spec_of(tmp_path / "yolo")
    relabelled = relabel_by_superclass(yolo)
    assert len(relabelled) == len(yolo) and relabelled.num_boxes == coco.num_boxes
    assert [list(r.class_names) for r in relabelled] == [list(relabel_by_superclass(coco)[i].class_names)
                                                            for i in range(len(coco))]


def load_spec_of(folder):
    from tlutils.data.export import yolo_spec
    from tlutils.data.specs import load_spec

    return load_spec(yolo_spec(folder))
