# %% [markdown]
# # 04 · The source detector: SSD-VGG16 on Belgian signs
#
# Every transfer strategy of notebook 05 starts from one detector: SSD-VGG16 trained on the source
# country, Belgium. This notebook trains it with the experiment runner, reads its training log, scores
# it with mean average precision (mAP) and looks at what it detects. With width-1.0 models it also
# tries a VGG16 backbone with ImageNet weights, the usual starting point in the literature.

# %% [markdown]
# ## What you will learn
#
# - how `tlutils.experiment` describes a training run (`RunConfig`), fills it in from the profile
#   (`resolve`) and runs it (`run`): data, model, training, evaluation every epoch, one results row per
#   epoch, a saved detector;
# - why a finished run is never trained twice (its rows are read back from `results.csv`) and how an
#   interrupted run resumes;
# - what the logged numbers mean: the loss and its parts, validation loss, mAP at IoU 0.5 and COCO mAP;
# - how to look at a detector's output on validation images.

# %% [setup]

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
PROFILE = "cpu"
SCORE_THRESHOLD = 0.3  # detections drawn from this score on
SHOWN_IMAGES = 6
TRY_IMAGENET = True  # also train from VGG16's ImageNet weights (width-1.0 profiles only; downloads 58 MB)
TRAIN_SOURCE = False  # True: train the source detector here even where tlutils ships it finished (cpu)

# %%
import pandas as pd

from tlutils.experiment import RunConfig, resolve, run, run_name, synth_dataset
from tlutils.experiment.claims import falls_first
from tlutils.experiment.shipped import read_manifest, shipped_folder
from tlutils.paths import runs_dir
from tlutils.plotting import course_figures_dir, plot_history, save_figure, show_detections
from tlutils.profiles import get_profile
from tlutils.transfer import load_detector

profile = get_profile(PROFILE)
FIGURES = course_figures_dir(PROFILE)
RESULTS = runs_dir(PROFILE)  # results.csv and one folder per run

# %% [markdown]
# ## 1. One run, described
#
# A `RunConfig` names what is trained on what; everything it leaves out comes from the profile. The
# source stage trains Belgium from scratch. `resolve` shows every knob the run will use, and the run's
# key is a hash of exactly this dictionary: change a knob and you get a new run, keep them all and you
# get the stored one.

# %%
config = RunConfig(stage="source", source_data="belgium", strategy="scratch", profile=PROFILE)
print(run_name(config))
pd.Series(resolve(config).to_dict(), dtype=object).to_frame("value")

# %% [markdown]
# ## 2. Training
#
# `run` renders the data if needed, builds SSD-VGG16 (inputs scaled to [-1, 1], "tf" preprocessing,
# since nothing here starts from ImageNet weights), trains it with Adam on the MultiBox loss
# and after every epoch evaluates on the validation images (the profile's number), appends a row to
# the results table and saves its state. The source stage renders as many scenes as it needs, so its
# augmentation is photometric only (brightness, contrast, saturation, hue); the few-shot target runs
# of notebook 05 add the SSD paper's zoom-out and IoU-constrained crops. Neither flips images: a flip
# turns "turn left" into "turn right". The `cpu` profile's target runs train in `mixed_bfloat16` (bf16
# arithmetic, float32 weights, loss and outputs) where the CPU has bf16 units (AVX-512 BF16 or AMX):
# faster per step there, at the mAP of float32 (docs/performance.md has the measurements and the
# machines); elsewhere bf16 is emulated and several times slower, so they train in float32. Its source
# detector trains in float32 on every machine, for the reason below (`mixed_precision` in the table
# above says which policy a run uses). If the session dies,
# running the cell again resumes after the last finished epoch and ends with the same numbers; once
# the run is finished, the cell only reads its rows back.
#
# **The shipped detector.** This run is the same for every reader with the same code: the `cpu`
# profile trains its source detector in float32 on every machine, so its key does not depend on the
# CPU, and tlutils ships it finished (`tlutils/shipped/`, made by `tlutils pretrain source --profile
# cpu`). `run` then *installs* it, weights and rows, in seconds instead of training it; set
# `TRAIN_SOURCE = True` to train it here (the next cell says how long it took where it was made).

# %%
shipped = shipped_folder(resolve(config).key)
if shipped is not None:
    made = read_manifest(shipped)
    print(f"shipped: trained by `{made['command']}` on {made['machine']} in {made['training_minutes']:.1f} min; "
          f"{'training it here instead (TRAIN_SOURCE)' if TRAIN_SOURCE else 'installed, not trained here'}. "
          f"Its weights are stored in {made['weights_dtype']}: val mAP@0.5 {made['val_map50_shipped']:.3f} "
          f"(the trained float32 weights: {made['val_map50_float32']:.3f})")
else:
    print(f"tlutils ships no finished source detector for the {PROFILE} profile: it trains here")
history = run(config, verbose=2, shipped=not TRAIN_SOURCE)
history[["epoch", "loss", "localization", "confidence", "regularization", "val_loss", "val_map50",
         "epoch_seconds"]].round(4)

# %% [markdown]
# `loss` is what the optimizer minimizes: `confidence + localization` (each divided by the number of
# matched default boxes) plus `regularization`, the L2 penalty, 0 here. `val_loss` is the same loss on
# the validation images without augmentation. An untrained head is confidently wrong (notebook 03),
# so the expectation is that the first epoch's loss is the largest and falls fast:

# %%
trained = history[history["epoch"] >= 1]  # epoch 0, where recorded, is the start: evaluated, not trained
first, last = trained["loss"].iloc[0], trained["loss"].iloc[-1]
print(f"loss {first:.2f} after epoch 1, {last:.2f} after epoch {int(trained['epoch'].iloc[-1])}; the first "
      f"epoch's loss is {'the largest' if falls_first(trained['loss']) else 'not the largest'} of the run")

# %%
figure = plot_history(history, metrics=["loss", "localization", "confidence", "val_loss", "val_map50"], hue=None)
save_figure(figure, "04_source_training_curves", FIGURES)

# %% [markdown]
# ## 3. Mean average precision
#
# The loss says how well the network fits its targets; **mAP** says how good the detections are. Per
# class, detections are ranked by score; one counts as a true positive when it overlaps a not yet
# matched ground truth of its class by IoU > 0.5 (Pascal VOC's rule). Average precision is the area
# under that class's precision-recall curve, mAP its mean over classes (`val_map50`). COCO's mAP
# averages the same over IoU thresholds 0.5 to 0.95 and rewards tight boxes (`coco_map`, computed by
# pycocotools after the last epoch).

# %%
final = history.iloc[-1]
print(f"after {int(final['step'])} steps: val mAP@0.5 = {final['val_map50']:.3f}, "
      f"COCO mAP@[0.5:0.95] = {final['coco_map']:.3f}, {history['epoch_seconds'].sum() / 60:.1f} min of training")

# %% [markdown]
# ## 4. What the detector sees
#
# The runner saved the trained detector as a `.keras` file (the `checkpoint` column). Its detections on
# validation scenes, with the ground truth dashed:

# %%
detector = load_detector(RESULTS / history["checkpoint"].iloc[-1])
val_set = synth_dataset("belgium", "val", profile.num_val_images, profile.input_size)
figure = show_detections(detector, val_set, score_threshold=SCORE_THRESHOLD, max_images=SHOWN_IMAGES)
save_figure(figure, "04_source_detections", FIGURES)

# %% [markdown]
# With the `cpu` profile's short schedule, expect the detector to find the larger, frontal signs and to
# miss or confuse small ones; with the `gpu` profile (SSD300, 40 epochs over 5,000 scenes) it becomes
# a much stronger source. The transfer study only needs a source that has learned something useful
# about signs: what matters there is how the strategies compare from the same start.

# %% [markdown]
# ## 5. A VGG16 backbone with ImageNet weights
#
# The usual recipe starts SSD from VGG16 trained on ImageNet (the `imagenet` strategy): the 13 conv
# layers get ImageNet's weights and SSD's own layers start random. Those weights exist for the
# full-width network only, and Keras downloads them once (58 MB). On a narrower profile, or offline,
# this section says so and moves on.

# %%
imagenet = None
if not TRY_IMAGENET or profile.width != 1.0:
    print(f"skipped: ImageNet weights fit width 1.0 only; the {PROFILE} profile uses width {profile.width} "
          "(run this notebook with PROFILE='gpu')")
else:
    try:
        imagenet = run(config.replace(strategy="imagenet"), verbose=2)
    except RuntimeError as error:  # no internet: the error says how to supply the weights file
        print(f"skipped: {error}")
if imagenet is not None:
    print(pd.concat([history, imagenet]).groupby("strategy")[["val_map50", "coco_map"]].last())

# %% [markdown]
# With a full run you would see the ImageNet start reach a given mAP in fewer steps, the effect He,
# Girshick and Dollar (2019) measured: pre-training mainly speeds up convergence, and matters most
# when data is scarce.

# %% [markdown]
# ## Summary
#
# - `RunConfig` + the profile = a fully resolved run with a stable key; `run` trains it once and
#   afterwards reads its rows from `runs/<profile>/results.csv`; interrupted runs resume exactly.
# - The results table has one row per epoch: the loss and its parts, the validation loss, mAP@0.5 and
#   (last epoch) COCO mAP, timings and the number of trainable parameters.
# - Judge a detector by mAP and by looking at its detections; the loss only says how well it fits its
#   targets.
#
# ## Exercises
#
# 1. Train a second source detector with `seed=1` (`config.replace(seed=1)`). How much does the final
#    mAP move? Keep this spread in mind when comparing strategies in notebook 05.
# 2. Train with `preprocessing="caffe"` instead of the runner's choice for training from scratch,
#    `"tf"` (see `resolve(config)`). Does the first epoch's loss change as notebook 03 predicts? Does
#    the final mAP?
# 3. Lower `SCORE_THRESHOLD` to 0.05 and redraw the detections. Why does mAP still count these boxes?
# 4. Interrupt the training cell (stop the kernel) in the middle of a run and run it again. Check in
#    `runs/<profile>/runs/<run name>/state/` what the runner saved.
