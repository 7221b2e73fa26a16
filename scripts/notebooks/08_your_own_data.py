# %% [markdown]
# # 08 · Your own data: the transfer study on the datasets you have
#
# Notebooks 04 to 07 study transfer on the sign world. This notebook runs the same study on data you
# bring: a source dataset the detector learns first and a target dataset it moves to, each named by one
# string, a *data spec*. Real photographs are large and their signs small, so the runner trains on
# crops at the photographs' own resolution and scores detectors on whole frames cut into overlapping
# tiles (`tlutils.tiling`). Without data of your own the notebook writes a small stand-in in a real
# labelling-tool format (YOLO files of sign-world frames), so every cell runs anywhere.

# %% [markdown]
# ## What you will learn
#
# - how to point the experiment runner at your data with two parameters: data specs such as
#   `yolo:<images>`, `coco:<annotations.json>`, `voc:<folder>`, `gtsdb:<folder>`;
# - what to check before training: the split and its rule, which source class each of your classes
#   starts from, how large your boxes are against the detector's default boxes and tiles, a few frames;
# - how to run a few strategies and sizes with `sweep` and read the table, including the **zero-shot**
#   row: the source detector on your data before any training ("adapt, or do nothing?");
# - how to read a run's average precision per class and per object size;
# - how to look at detections on whole frames (tiled inference).

# %% [setup]

# %% [markdown]
# ## Parameters
#
# Two specs say what the study is about: `SOURCE_DATA`, what the source detector learns (the course's
# Belgian sign world by default), and `TARGET_DATA`, your data. `None` writes the stand-in:
# `EXAMPLE_FRAMES` German sign-world frames of `EXAMPLE_FRAME_SIZE` pixels (`None`: twice the
# detector's input, so that a frame really is cut into tiles), as YOLO files under `data/`. `CLASSES`
# says how your classes meet the source's: by name (with a synonym table, so GTSDB's "go right" is the
# sign world's `turn_right`) or relabelled to the four superclasses. `SIZES = None` takes the profile's
# numbers of target images that your training split holds; `SEEDS = None` the profile's seeds.
# `SMALLEST_SCALE` is the smallest default box as a share of the input side (`None`: SSD's 0.1); make
# it smaller when many of your signs are smaller than that (section 2's histogram shows how many).

# %% tags=["parameters"]
PROFILE = "cpu"
SOURCE_DATA = "synth:belgium"
TARGET_DATA = None  # your data spec; None writes the stand-in
CLASSES = "name"  # or "superclass"
STRATEGIES = ["scratch", "finetune", "head_only"]
SIZES = None
SEEDS = None
EXAMPLE_FRAMES = 24  # the stand-in, when TARGET_DATA is None
EXAMPLE_FRAME_SIZE = None
SMALLEST_SCALE = None

# %%
import pandas as pd

from tlutils.anchors import FIRST_LAYER_SCALE
from tlutils.data import match_classes, parse_spec
from tlutils.data.export import real_format_example
from tlutils.experiment import RunConfig, final_epochs, load_per_class, resolve, source_config, summarize, sweep
from tlutils.experiment.datasets import real_splits
from tlutils.experiment.run_data import REAL_TILE_OVERLAP_SHARE, REAL_TILE_SCALES, label_maps, training_pool
from tlutils.paths import runs_dir, shared_data_dir
from tlutils.plotting import (box_table, course_figures_dir, plot_box_sizes, plot_history, save_figure,
                              show_records, show_tiled_detections)
from tlutils.profiles import get_profile
from tlutils.transfer import load_detector

profile = get_profile(PROFILE)
FIGURES = course_figures_dir(PROFILE)
seeds = list(SEEDS or profile.seeds)

# %% [markdown]
# ## 1. Point it at your data
#
# A data spec is `<format>:<path>[,<option>=<value>]...`; `tlutils.data.specs.format_help()` lists every
# format and its options. A folder of images with YOLO labels beside them in `labels/` is
# `yolo:<images>,labels=<labels>` (a `classes.txt` in or above the image folder names the classes); a
# COCO export of CVAT or Label Studio is `coco:<annotations.json>`. `on_error=skip` leaves bad
# annotations out instead of stopping (they are counted). Use absolute paths: the results table keeps
# the spec, and notebooks run from several folders.

# %%
frame_size = EXAMPLE_FRAME_SIZE or 2 * profile.input_size
target_data = TARGET_DATA or real_format_example("germany", EXAMPLE_FRAMES, frame_size).yolo
base = RunConfig(profile=PROFILE, source_data=SOURCE_DATA, target_data=target_data, classes=CLASSES,
                 num_target_images=1, smallest_scale=SMALLEST_SCALE)
print(f"source: {base.source_data}\ntarget: {base.target_data}")
parse_spec(base.target_data)

# %% [markdown]
# The stand-in is the sign world's Germany written in the YOLO layout by `tlutils.data.export.export_yolo`
# (images, `labels/<image>.txt` with one `class cx cy w h` line per box, `classes.txt`), which is how most
# labelling tools export. If you have the German Traffic Sign Detection Benchmark (GTSDB, Houben et al.
# 2013), its training frames are `gtsdb:<folder>,on_error=skip` (the official `gt.txt` lists one sign
# twice). On a machine with the course's shared data and a profile larger than `ci`, the next cell says
# where they are; nothing here needs them.

# %%
shared = shared_data_dir()  # ../shared/data beside the project, or None
gtsdb_train = shared / "gtsdb-train" if shared is not None else None
if TARGET_DATA is None and PROFILE != "ci" and gtsdb_train is not None and gtsdb_train.is_dir():
    print(f"GTSDB is here: TARGET_DATA = \"gtsdb:{gtsdb_train},on_error=skip\" studies real German photographs")

# %% [markdown]
# ## 2. What was loaded
#
# The runner loads the target data once and splits it with a fixed seed, so every run of a study sees
# the same validation and test frames whatever its own seed; a run's few-shot training set is drawn
# from the train split. (GTSDB keeps its official test frames.) Check the sizes and the rule:

# %%
# NBVAL_CHECK_OUTPUT
dataset, splits = real_splits(base.target_data, base.classes)
print(splits.rule)
print(f"{len(dataset.skipped)} bad annotations skipped" if dataset.skipped else "no annotation was skipped")
pd.DataFrame([{"split": name, "images": len(part), "boxes": part.num_boxes,
               "background images": sum(record.is_background for record in part),
               "classes with boxes": sum(count > 0 for count in part.box_counts().values())}
              for name, part in splits.items()]).set_index("split")

# %% [markdown]
# A transferred detector keeps the source's class row for every class the two datasets share and starts
# a fresh row for a class the source never saw (`tlutils.data.classes.match_classes`, what the runner
# calls). Classes meet by canonical name; with `CLASSES = "superclass"` both datasets are first
# relabelled to prohibitory, danger, mandatory and other. A class that should match but shows "new" is
# spelled in a way the synonym table (`tlutils.data.classes.CLASS_SYNONYMS`) does not know: rename it.

# %%
# NBVAL_CHECK_OUTPUT
target_run, source_run = resolve(base), resolve(source_config(base))
target_pool, source_pool = training_pool(target_run, None), training_pool(source_run, None)
target_names, source_names = label_maps(target_pool)[1], label_maps(source_pool)[1]  # model class -> name
canonical, class_map = match_classes(source_pool, target_pool, "name")  # both already in the CLASSES mode
matched = sum(source is not None for source in class_map.values())
print(f"{matched} of {len(canonical)} target classes start from a source class of {source_run.data}")
pd.DataFrame([{"target class": model_class, "your name": target_names[model_class], "canonical name": name,
               "source class": class_map[model_class] or "-",
               "source name": source_names.get(class_map[model_class], "(new: a fresh row)")}
              for model_class, name in canonical.items()]).set_index("target class")

# %% [markdown]
# Size decides what an SSD can find. In a tile at native resolution a sign keeps its pixels, so compare
# box sides in pixels with two marks: the smallest default box (`SMALLEST_SCALE`, by default SSD's
# `FIRST_LAYER_SCALE`, of the input side: smaller signs are matched only through their best anchor) and the largest sign that lies whole in a
# half-scale tile (the tiles' overlap, doubled: larger signs are cut in every tile). The source line
# shows the sizes the source detector learned.

# %%
overlap = round(REAL_TILE_OVERLAP_SHARE * profile.input_size)
marks = {"smallest default box": (SMALLEST_SCALE or FIRST_LAYER_SCALE) * profile.input_size,
         "largest whole in a tile": overlap / min(REAL_TILE_SCALES)}
figure = plot_box_sizes({f"source ({source_run.data})": source_pool, "target train": splits["train"],
                         "target val": splits["val"]}, marks)
save_figure(figure, "08_your_data_box_sizes", FIGURES)

# %%
# NBVAL_CHECK_OUTPUT
sides = box_table({"target": dataset})["side_px"]
print(f"target boxes: {len(sides)}, sides {sides.min():.0f}-{sides.max():.0f} px (median {sides.median():.0f}); "
      f"{(sides < marks['smallest default box']).mean():.0%} below the smallest default box "
      f"({marks['smallest default box']:.1f} px), {(sides > marks['largest whole in a tile']).mean():.0%} above "
      f"the largest whole in a tile ({marks['largest whole in a tile']:.0f} px)")

# %% [markdown]
# And a few training frames with their boxes, coloured by superclass (grey: your data names none):

# %%
figure = show_records(list(splits["train"])[:4], columns=2, panel_size=4.0)
save_figure(figure, "08_your_data_frames", FIGURES)

# %% [markdown]
# ## 3. Strategies and sizes
#
# Pick a few strategies (`tlutils.transfer.valid_strategies()` lists them; notebook 05 explains them)
# and numbers of target training images. Every strategy gets the profile's budget of optimizer steps.
# Validation mAP on whole frames is tiled inference, seconds per frame on a CPU, so the runner measures
# it before training (epoch 0) and after the last epoch only, on at most the profile's number of
# validation frames; the validation loss, on fixed crops, comes every epoch.

# %%
sizes = list(SIZES or [size for size in profile.target_sizes if size <= target_run.pool_size]
             or [target_run.pool_size])
grid = {"target_data": [base.target_data], "strategy": STRATEGIES, "num_target_images": sizes, "seed": seeds}
print(f"train split: {target_run.pool_size} images; sizes {sizes}; val mAP on {target_run.num_val_images} frames")
print(f"{len(STRATEGIES)} strategies x {len(sizes)} sizes x {len(seeds)} seeds = "
      f"{len(STRATEGIES) * len(sizes) * len(seeds)} runs of {target_run.total_steps} steps")

# %% [markdown]
# ## 4. The sweep
#
# Finished runs are read back from `runs/<profile>/results.csv` (a run's key includes a fingerprint of
# the data's annotations, so edited labels train anew). The source detector is trained first if no
# notebook has trained it yet.

# %%
results = sweep(grid, base=base)
runs = results[results["stage"] == "target"]
print(f"{runs['run_key'].nunique()} target runs, {runs['epoch_seconds'].sum() / 60:.1f} min of training")

# %% [markdown]
# ## 5. The table, with the zero-shot row
#
# Each run has a row per epoch. Epoch 0 is the detector before training: for a strategy that starts
# from the source, the source detector with its class rows mapped onto yours (what you get by doing
# nothing); for scratch, a random start. The table puts it beside the final mAP, mean over seeds. Which
# mAP it is, the table says in its `map_metric` column.

# %%
summary = summarize(runs).set_index(["strategy", "num_target_images"])
before = runs[runs["epoch"] == 0].groupby(["strategy", "num_target_images"])["val_map50"].mean()
table = summary[["val_map50_mean", "val_map50_std", "num_seeds"]].join(before.rename("val_map50_epoch0"))
table.assign(gain=table["val_map50_mean"] - table["val_map50_epoch0"]).round(3)

# %%
largest = summary.xs(sizes[-1], level="num_target_images")["val_map50_mean"]
leaders = list(largest.index[largest == largest.max()])
who = f"{leaders[0]} ends highest" if len(leaders) == 1 else f"{', '.join(leaders)} end level"
print(f"val_map50 is {runs['map_metric'].iloc[0]}, averaged over classes.")
print(f"With {sizes[-1]} target images, {who}: val mAP@0.5 {largest.max():.3f} (mean over seeds).")
source_started = runs[(runs["epoch"] == 0) & (runs["strategy"] != "scratch")]["val_map50"]
if len(source_started):
    verdict = "beats" if largest.max() > source_started.mean() else "does not beat"
    print(f"The source detector as it is scores {source_started.mean():.3f}: the best strategy {verdict} doing nothing.")

# %% [markdown]
# The curves: for real data the mAP panel has two points per run, epoch 0 and the last; the losses
# come every epoch. Training loss is not logged at epoch 0 (nothing was trained).

# %%
figure = plot_history(runs, metrics=["val_map50", "val_loss", "loss"], x="step")
save_figure(figure, "08_your_data_curves", FIGURES)

# %% [markdown]
# ## 6. Per class and per size: which signs are found
#
# One mAP hides which signs a detector finds and which it misses. It is the mean of one average
# precision (AP) per class, and each run keeps those in its folder (`per_class.csv`, read back by
# `load_per_class`): per class the validation ground truths, AP@0.5 before training (epoch 0) and
# after the last epoch, and the final AP of COCO's small (< 32² pixels), medium and large signs. A class
# without ground truth in the validation frames (or none of a size) cannot be scored: NaN, not 0.
# Here, the best final run:

# %%
best = final_epochs(runs).sort_values("val_map50", ascending=False, kind="stable").iloc[0]
per_class = load_per_class(runs_dir(PROFILE), best["run_key"])
final = per_class[per_class["epoch"] == per_class["epoch"].max()].set_index("class")
zero_shot = per_class[per_class["epoch"] == 0].set_index("class")["ap50"]
print(f"{best['strategy']}, {best['num_target_images']} images, seed {best['seed']}: {best['map_metric']} per class")
classes = final[["num_ground_truths"]].assign(ap50_epoch0=zero_shot, ap50=final["ap50"])
classes = classes.join(final[["ap50_small", "ap50_medium", "ap50_large"]])
classes.round(3)

# %% [markdown]
# Read it from the classes with ground truth: their mean is the run's mAP. A class at 0 is never found
# above the IoU threshold; compare its row with its box sizes and with the source class it started from
# (section 2).

# %%
scored = classes.dropna(subset=["ap50"])
if scored.empty:
    print("No class has ground truth in the validation frames: there is no AP to read.")
else:
    missed = list(scored.index[scored["ap50"] == 0])
    highest = scored["ap50"].idxmax()
    by_size = ", ".join(f"{size} {final[f'ap50_{size}'].mean():.3f}" for size in ("small", "medium", "large"))
    print(f"{len(scored)} of {len(classes)} classes have validation ground truth; their mean AP is "
          f"{scored['ap50'].mean():.3f} (the run's val_map50: {best['val_map50']:.3f}).")
    if len(missed) < len(scored):
        print(f"Highest: {highest} ({scored.loc[highest, 'ap50']:.3f}).")
    print(f"Never found ({len(missed)}): {', '.join(missed) or 'none'}.")
    print(f"Mean AP by object size (nan: no sign of that size): {by_size}.")

# %% [markdown]
# ## 7. Detections on whole frames
#
# The detector of the best final run, on validation frames: `show_tiled_detections` cuts each frame into
# the tiles the runner evaluates with (those at native resolution drawn faintly), detects in each tile
# and merges the tiles' detections (`tlutils.tiling.detect_tiled`). White dashed boxes are the ground
# truth. With the `ci` profile's few steps expect few or no detections above the threshold; a `cpu` run
# finds the larger signs.

# %%
print(f"{best['strategy']}, {best['num_target_images']} images, seed {best['seed']}: "
      f"val mAP@0.5 {best['val_map50']:.3f}")
detector = load_detector(runs_dir(PROFILE) / best["checkpoint"])
figure = show_tiled_detections(detector, splits["val"], score_threshold=0.3, max_images=4,
                               smallest_scale=SMALLEST_SCALE)
save_figure(figure, "08_your_data_detections", FIGURES)

# %% [markdown]
# ## Summary
#
# - Two data specs point the whole study at your data; the runner loads and splits it once, fingerprints
#   its annotations, trains on crops at native resolution and scores on whole frames by tiled inference.
# - Check before you train: split sizes, which source class each of your classes starts from, and your
#   box sizes against the smallest default box and the tiles.
# - Read every strategy against its zero-shot row: a transfer strategy has to beat the source detector
#   as it is, and scratch has to beat it too.
# - Read a run per class and per object size (`load_per_class`): the mAP is a mean over classes, so a
#   class found well can hide one never found.
# - With the `ci` profile these are tiny runs whose numbers say nothing about the strategies; with the
#   `cpu` or `gpu` profile, and more target images, they do.
#
# ## Exercises
#
# 1. Point `TARGET_DATA` at your own export (a COCO file, a YOLO or VOC folder) and run sections 1 and 2
#    only. Does every class you expect match a source class? Which ones need another spelling?
# 2. Set `CLASSES = "superclass"`. With the YOLO stand-in every frame with a sign is dropped: YOLO files
#    carry no superclass. Use the COCO copy of the same frames instead (`real_format_example(...).coco`, whose
#    `supercategory` does). How many classes are left, and how does the zero-shot row change?
# 3. Which share of your boxes lies below the smallest default box? Call `show_tiled_detections` with
#    `scales=(2.0, 1.0, 0.5)` (tiles enlarged twice as well): are more small signs found, at what cost
#    in tiles per frame (`tlutils.tiling.tile_grid`)? Or train with smaller default boxes instead:
#    rerun with `SMALLEST_SCALE = 0.05` (new runs, new keys; the source detector is retrained with them).
# 4. Add `"freeze:block3"` and `"two_stage"` to `STRATEGIES`: only the new runs train. Which strategies
#    beat the zero-shot row, and by how much?
# 5. In section 6, which classes does the zero-shot detector already find (AP above 0 at epoch 0)? Do
#    they gain most from training, or least? Run `load_per_class` on a `scratch` run of the same size.
