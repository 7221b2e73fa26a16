# %% [markdown]
# # 06 · "My pretrained detector stalls at a loss of 10": a diagnosis
#
# A common report from people transferring a Keras SSD (it is issue #112 of ssd_keras, "Transfer
# learning SSD": Belgian signs, a frozen VGG base): *the pretrained and frozen variants stall at a much
# higher loss than training from scratch, and freezing does not make training faster.* Both
# observations are real; both conclusions ("transfer does not work", "something is broken") are
# wrong. This notebook reproduces the symptom on the runs of notebook 05 and explains it with
# experiments on the same data.

# %% [markdown]
# ## What you will learn
#
# 1. why **total losses are not comparable across variants** when an L2 penalty is inside the loss
#    (ssd_keras' `l2(0.0005)`), and how Keras 2 and Keras 3 differ for frozen layers;
# 2. what **preprocessing that does not match the weights** does to transferred features, and why a
#    scratch model does not care;
# 3. how a **fine-tuning learning rate** that is too high destroys what was transferred;
# 4. why variants must be **judged by mAP, not by loss**;
# 5. what freezing really saves: **seconds per epoch against the trainable share** (the forward pass
#    still runs through frozen layers, and compute is not where the parameters are);
# 6. what happens in **the student's own experiment**: the Belgian detector started from scratch, from a
#    sign classifier and from another detector, on a long schedule with the L2 term in the loss;
# 7. a **checklist** for a thesis chapter on transfer learning of detectors.

# %% [setup]

# %% [markdown]
# ## Parameters
#
# The defaults name runs notebook 05 has already trained (same profile, L2 penalty, country, number of
# images and seeds), so this notebook mostly reads `runs/<profile>/results.csv`; only the experiments
# of sections 2 and 3 train something new. Section 6's study is long (its first cell says how long it
# took where it was measured): on the cpu profile it reads the runs shipped with tlutils unless
# `RUN_SOURCE_STUDY = True`.

# %% tags=["parameters"]
PROFILE = "cpu"
COUNTRY = None  # None: the profile's nearest target country
NUM_TARGET_IMAGES = None  # None: the profile's largest number of target images
SEEDS = None  # None: the profile's seeds
VARIANTS = ["scratch", "freeze:block3", "freeze:fc", "finetune", "head_only"]
L2_REGULARIZATION = 0.0005  # as in notebook 05, so its runs are reused
LEARNING_RATE_FACTORS = [10, 100]  # fine-tuning at 10x and 100x the profile's base learning rate
SOURCE_STARTS = ["scratch", "classifier", "detector"]  # section 6; "imagenet" needs VGG16's ImageNet weights
RUN_SOURCE_STUDY = False  # True: train section 6's runs here even where tlutils ships them
MAP_THRESHOLD = 0.7  # section 6: steps each start needs to reach this val mAP@0.5

# %%
import keras
import pandas as pd

from tlutils.anchors import generate_anchors
from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval, make_label_map
from tlutils.evaluation import evaluate_detector
from tlutils.experiment import (KERAS_SSD_L2, OVERFIT_DROP, RunConfig, convergence_facts, convergence_table,
                                final_epochs, load_results, pretrained_lines, resolve, run, source_config, source_study,
                                study_size, sweep, synth_dataset, training_speed)
from tlutils.experiment.claims import change_sentence, rank_agreement, start_sentences, worst_and_best
from tlutils.model import (PREPROCESSING_MODES, anchor_config_for, build_ssd_vgg16, freeze, frozen_regularization,
                           num_classes_of, regularization_loss, transfer_weights)
from tlutils.paths import runs_dir
from tlutils.plotting import (course_figures_dir, plot_history, plot_loss_components, plot_loss_vs_map,
                              plot_training_speed, save_figure)
from tlutils.profiles import get_profile
from tlutils.transfer import load_detector, training_plan

profile = get_profile(PROFILE)
FIGURES = course_figures_dir(PROFILE)
RESULTS = runs_dir(PROFILE)
country = COUNTRY or profile.countries[0]
size = NUM_TARGET_IMAGES or max(profile.target_sizes)
seeds = list(SEEDS or profile.seeds)
base = RunConfig(profile=PROFILE, target_data=country, num_target_images=size, l2_regularization=L2_REGULARIZATION)
variants = sweep({"strategy": VARIANTS, "seed": seeds}, base=base)
print(f"{variants['run_key'].nunique()} runs: {country}, {size} target images, L2 {L2_REGULARIZATION}")

# %% [markdown]
# ## 0. The symptom
#
# The report comes from ssd_keras under Keras 2, and Keras 3 logs the loss of frozen models
# differently (section 1). So we look at two losses: `loss`, as Keras 3 logs it, and `keras2_loss`,
# what Keras 2 would have shown, which adds the L2 penalty of the *frozen* kernels. Frozen weights never
# move, so that penalty is a constant per run; the next cell computes it from each run's saved detector.

# %%
final = final_epochs(variants)
frozen_l2 = {}
for row in final.itertuples():
    detector = load_detector(RESULTS / row.checkpoint)
    frozen_part = training_plan(row.strategy, int(row.total_steps), float(row.learning_rate))[-1].freeze_point
    frozen_l2[row.run_key] = frozen_regularization(detector, frozen_part) if frozen_part else 0.0
variants = variants.assign(keras2_loss=variants["loss"] + variants["run_key"].map(frozen_l2))
final = final.assign(frozen_l2=final["run_key"].map(frozen_l2))
final = final.assign(keras2_loss=final["loss"] + final["frozen_l2"])

# %% [markdown]
# The training loss of each variant, step by step (mean over seeds), in both views, on one scale:

# %%
figure = plot_history(variants, metrics=["loss", "keras2_loss", "val_map50"], x="step")
save_figure(figure, "06_symptom_total_loss", FIGURES)

# %%
ranking = final.groupby("strategy")[["loss", "frozen_l2", "keras2_loss", "val_map50"]].mean()
print(rank_agreement(ranking, by="loss"))
print(rank_agreement(ranking, by="keras2_loss"))
if "scratch" in ranking.index:
    place = list(ranking.sort_values("keras2_loss").index).index("scratch") + 1
    print(f"scratch ends {place} of {len(ranking)} by Keras 2's loss (1 = lowest), "
          f"the student saw it lowest")
ranking.round(3)

# %% [markdown]
# In the Keras 2 view every frozen variant carries `frozen_l2` on top of whatever it learns: a floor
# its loss can never go below, however well it trains, which looks exactly like a stall. Whether either
# loss ranks the variants the way mAP does is printed above for this run. Where scratch lands depends
# on its budget: in the reported setup scratch had trained for far longer than the transfers here.

# %% [markdown]
# ## 1. What the total is made of
#
# `SSDTrainer` logs the three parts of the loss separately: `localization` and `confidence` (the
# MultiBox loss, what the detector gets wrong) and `regularization`, the L2 penalty
# `0.0005 * sum(w^2)` over the trainable conv kernels that Keras adds to the displayed loss.

# %%
parts = final.groupby("strategy")[["loss", "localization", "confidence", "regularization", "val_map50"]].mean()
parts.assign(data_loss=parts["localization"] + parts["confidence"],
             l2_share=parts["regularization"] / parts["loss"]).round(3)

# %%
figure = plot_loss_components(variants)
save_figure(figure, "06_loss_components", FIGURES)

# %% [markdown]
# %%
start_l2 = variants[variants["epoch"] == 0].groupby("strategy")["regularization"].mean()
print("L2 term before training (epoch 0), mean over seeds:", start_l2.round(2).to_dict())

# %% [markdown]
# The L2 term measures the *weights*, not the detections. Variants that train everything carry the
# penalty of the whole network (printed above for this model at epoch 0; about 9 for SSD300 at
# initialization, notebook 02), and it shrinks only as fast as weight decay pulls the kernels in, slowly at
# fine-tuning's low learning rate; variants that freeze most carry only their heads' penalty. So two
# totals differ by an amount that has nothing to do with detection, and a variant can "win" on loss by
# training fewer weights. Compare the `data_loss` column instead, or better, take the penalty out of the
# loss and put weight decay into the optimizer: torchvision's SSD does, and its logged loss is pure
# MultiBox loss.

# %% [markdown]
# ## 2. Preprocessing that does not match the weights
#
# Weights expect the input convention they were trained with. VGG16's ImageNet weights expect "caffe"
# inputs: RGB turned to BGR minus the ImageNet mean, no scaling. Our Belgian source detector was
# trained from scratch, on inputs scaled to [-1, 1] ("tf", the runner's choice for training from
# scratch, notebook 03). Feed weights another convention and every layer sees numbers of the wrong
# size, and often the wrong sign. Below, the trained Belgian detector with each preprocessing swapped
# in, scored on Belgian validation images; nothing is retrained.

# %%
trained_with = resolve(source_config(base)).preprocessing
source = load_detector(RESULTS / run(source_config(base), verbose=0)["checkpoint"].iloc[-1])
belgium_val = synth_dataset("belgium", "val", profile.num_val_images, profile.input_size)
anchors = generate_anchors(anchor_config_for(source))
sequence = DetectionSequence(belgium_val, anchors, make_label_map(belgium_val.classes), batch_size=profile.batch_size,
                             input_size=profile.input_size, shuffle=False)
swapped_map = {}
for mode in PREPROCESSING_MODES:
    swapped = build_ssd_vgg16(num_classes_of(source), input_size=profile.input_size, width=profile.width,
                              preprocessing=mode)
    transfer_weights(source, swapped)
    swapped_map[mode] = evaluate_detector(swapped, sequence, ground_truths_for_eval(sequence), anchors)["map50"]
for mode, value in swapped_map.items():
    if mode != trained_with:
        print(change_sentence(f"{trained_with} -> {mode}", swapped_map[trained_with], value))
pd.Series(swapped_map, name=f"Belgian val mAP@0.5 (trained with {trained_with!r})").round(3).to_frame()

# %% [markdown]
# Features fed another preprocessing than they were trained with lose what the changes above show, and
# a frozen variant cannot adapt them. A
# model trained from scratch is tied to no convention: it learns the one it is given. It is not
# indifferent to it either (caffe's large inputs start it with huge logits, notebook 03, and it may
# learn more slowly in a short budget), but nothing it knows is destroyed. The scratch target, trained
# with the other preprocessing:

# %%
other = "tf" if resolve(base).preprocessing == "caffe" else "caffe"
scratch_other = run(base.replace(strategy="scratch", preprocessing=other), verbose=0)
scratch_default = variants[variants["strategy"] == "scratch"]
pd.concat([scratch_default, scratch_other]).groupby(["preprocessing", "seed"])["val_map50"].last().round(3).to_frame()

# %% [markdown]
# The runner always feeds transferred weights the preprocessing they were trained with (source and
# target runs share it), so in this course the mismatch arises only on purpose. In practice it arises
# when ImageNet weights meet a data pipeline that divides by 255, as Keras' own image utilities and many
# tutorials do.

# %% [markdown]
# ## 3. A fine-tuning learning rate that is too high
#
# `finetune` trains everything at a tenth of the base rate. Here it also runs at 10 and 100 times that
# (the legend gives the rate fine-tuning actually used). Validation mAP and training loss per epoch,
# then the first and the last evaluation of each rate:

# %%
learning_rates = [profile.learning_rate * factor for factor in LEARNING_RATE_FACTORS]
high = sweep({"learning_rate": learning_rates}, base=base.replace(strategy="finetune", seed=seeds[0]))
default = variants[(variants["strategy"] == "finetune") & (variants["seed"] == seeds[0])]
rates = pd.concat([default, high], ignore_index=True)
figure = plot_history(rates.assign(learning_rate=rates["phase_learning_rate"]), metrics=["val_map50", "loss"],
                      hue="learning_rate", x="step")
save_figure(figure, "06_finetune_learning_rate", FIGURES)

# %%
first_last = rates.groupby("phase_learning_rate")["val_map50"].agg(first_epoch="first", last_epoch="last")
zero_shot = float(default["val_map50"].iloc[0])  # epoch 0: the source detector on the target
for rate, row in first_last.iterrows():
    print(change_sentence(f"rate {rate:g}", zero_shot, row["last_epoch"], "val mAP@0.5 zero-shot -> final"))
first_last.round(3)

# %% [markdown]
# The hypothesis to check against the lines above: up to some rate, fine-tuning keeps what the source
# detector brings (the zero-shot score) and improves from there; beyond it, the first large steps wreck
# the transferred features, and within the same budget the detector has to relearn what it was given,
# which rarely works with few images. Where the cliff lies depends on the optimizer, the model and the data;
# the safe side is low, which is the Keras transfer-learning guide's advice: fine-tune "with a very low
# learning rate" (e.g. Adam 1e-5 for a full-size model), after the new head has settled.

# %% [markdown]
# ## 4. Judge variants by mAP, not by loss
#
# Every target run of this profile so far (notebook 05's sweep and this notebook's), final epoch:
# training loss and validation loss against validation mAP. If loss ranked variants, the points would
# fall on a line from top left to bottom right.

# %%
all_runs = load_results(RESULTS)
all_target = all_runs[all_runs["stage"] == "target"]
figure = plot_loss_vs_map(all_target)
save_figure(figure, "06_loss_vs_map", FIGURES)

# %%
final_all = final_epochs(all_target)
final_all[["loss", "val_loss", "val_map50"]].corr(method="spearman").round(2)

# %% [markdown]
# Pooled over everything, loss and mAP correlate: a detector that has learned nothing has both a high
# loss and no mAP. But among the variants that work, the ranking by loss is unreliable (compare the
# three rankings printed in section 0): penalties, frozen parts, preprocessing and class heads all move
# the loss without moving the detections. ssd_keras' issues show runs with equal validation loss and
# clearly different mAP. Loss values are not even comparable
# across implementations: ssd_keras' own reference VOC run logs about 10 after 1,000 steps and ends at
# 3.8, another port logs 1.1 falling to 0.6 for the same task.

# %% [markdown]
# ## 5. Does freezing speed up training?
#
# Seconds per epoch of the runs of section 0 (median over epochs, the first epoch of each phase left
# out since it includes building the training step), against the share of parameters that train.

# %%
speed = training_speed(variants)
total_params = int(all_runs["trainable_params"].max())
figure = plot_training_speed(speed, total_params)
save_figure(figure, "06_freezing_speed", FIGURES)

# %%
per_strategy = speed.groupby("strategy")[["trainable_params", "images_per_s"]].median()
per_strategy = per_strategy.assign(trainable_share=per_strategy["trainable_params"] / total_params,
                                   speedup=per_strategy["images_per_s"] / per_strategy.loc["scratch", "images_per_s"])
slowest, fastest = worst_and_best(per_strategy["speedup"].to_dict())
print(f"fastest: {fastest}, {per_strategy.loc[fastest, 'speedup']:.2f}x scratch's images/s with "
      f"{per_strategy.loc[fastest, 'trainable_share']:.0%} of the parameters training; slowest: {slowest}")
per_strategy.round(2)

# %% [markdown]
# The expectation, which the line above checks for this run: freezing speeds up a step, but not in
# proportion to the frozen parameters, and only up to a limit. A step costs compute, and compute sits
# where the feature maps are large: blocks 1 to 3 hold
# about 5% of the parameters but run at the highest resolutions, so freezing them saves far more time
# than their share of the parameters. Freezing more saves less and less, because the forward pass
# through frozen layers always remains, about a third of a full training step: no freeze point makes a
# step more than about three times faster. (On a 2-core laptop CPU we measured, for this profile's
# model in float32 and a batch of 16: 0.38 s per step training everything, 0.23 s frozen up to
# `block3`, 0.15 s up to `block5`, 0.13 s with only the heads training; `tlutils.bench.interleaved_steps` takes such timings
# in turns, so that load from other programs hits all variants alike.) An epoch also spends time on data
# loading, augmentation and evaluation, which freezing does not touch: a run whose input pipeline is
# the bottleneck, as with the Python augmentation generator of ssd_keras, sees almost no speed-up. The
# timings in the results table come from runs made at different moments; on a shared machine compare
# them with care. Whether the faster steps buy a better detector in the same time is another question:
# notebook 05's section 8 compares the strategies at equal training time as well as at equal steps.

# %% [markdown]
# ## 6. The student's own experiment: three starts, one long schedule
#
# Sections 0 to 5 used the course's runs. The thesis trained its *Belgian* detector several ways and
# saw scratch fall to a loss of 3 while every pretrained start stalled at 9 to 11. Here is that
# experiment on the sign world, offline, with ssd_keras' L2 factor inside the loss:
#
# - `scratch`: random initialization, as in notebook 04;
# - `classifier`: the 13 VGG16 convolutions from a **sign classifier** the project trains first on sign
#   crops cut from Belgian scenes (`tlutils pretrain classifier`; like a sign-classification dataset, it
#   may hold more images than the detection set: the next cell says how many); fc6, fc7 and the heads
#   start fresh;
# - `detector`: a whole SSD trained first on the sign world's **other countries** (the stand-in for
#   COCO: other data, other classes), its class rows mapped onto Belgium's by name (`tlutils pretrain
#   detector`);
# - `imagenet` (VGG16's ImageNet weights) needs a download; it is an exercise.
#
# The training set is small and the schedule long, meant to give every start time to converge and
# then to over-fit, as the student's did after 100 epochs (the counts below say whether they did).
# The sizes, what each pretrained start was trained on, and where the rows come from:

# %%
study, provenance = source_study(PROFILE, SOURCE_STARTS, RESULTS, run_here=RUN_SOURCE_STUDY)
study_sizes = study[study["epoch"] >= 1].groupby("strategy")[["num_target_images", "total_steps"]].first()
print(provenance)
print(f"Belgian training images: {study_sizes['num_target_images'].iloc[0]}, steps: "
      f"{study_sizes['total_steps'].iloc[0]}, evaluated every {study_size(PROFILE).steps_per_epoch or 'epoch'} "
      f"steps; L2 factor {KERAS_SSD_L2}; seeds per start: {study.groupby('strategy')['seed'].nunique().min()}")
for line in pretrained_lines(PROFILE, SOURCE_STARTS, RESULTS, run_here=RUN_SOURCE_STUDY):
    print(line)
study = study.assign(data_loss=study["localization"] + study["confidence"])
trained = study[study["epoch"] >= 1]  # epoch 0 (the start; its val loss dwarfs the rest) is in the table below
figure = plot_history(trained, metrics=["loss", "data_loss", "regularization", "val_loss", "val_map50"], x="step")
save_figure(figure, "06_source_starts", FIGURES)

# %% [markdown]
# The first panel is the loss the student watched: nothing is frozen here, so Keras 2 and Keras 3
# show the same total, the data loss (second panel) plus the L2 term (third). Per start, mean over
# seeds: the L2 term before and after training, val mAP@0.5 before training (`start_map50`), after
# the first trained epoch, at its best and at the end, the displayed and the data loss at the end,
# where the validation loss was lowest, the steps to `MAP_THRESHOLD`, and how many seeds over-fitted
# (val mAP more than `OVERFIT_DROP` below its best at the end while the training data loss kept
# falling):

# %%
starts = convergence_table(convergence_facts(study, MAP_THRESHOLD))
print("\n".join(start_sentences(starts, MAP_THRESHOLD)))
print(f"(over-fitting counts a final val mAP more than {OVERFIT_DROP} below the run's best)")
starts[["start_l2", "end_l2", "start_map50", "early_map50", "best_map50", "best_map50_std", "best_step",
        "final_map50", "final_loss", "final_data_loss", "min_val_loss_step", "steps_to_threshold", "reached",
        "overfit", "seeds"]].round(3)

# %% [markdown]
# The student's model was SSD300 (width 1.0, 300 px), and their transfers froze the convolutions.
# The L2 term grows with the model. Here it is for a fresh initialization of this profile's model and of
# SSD300, and the part of it that Keras 2 would keep in the displayed loss when the convolutions up to
# `block5` or `fc` are frozen. Nothing here trains: the models are only built.

# %%
sizes = {f"this profile ({profile.input_size} px, width {profile.width})": (profile.input_size, profile.width),
         "SSD300 (300 px, width 1.0)": (300, 1.0)}
floors = {}
for name, (input_size, width) in sizes.items():
    keras.utils.set_random_seed(0)
    fresh = build_ssd_vgg16(num_classes_of(source), input_size, width, l2_regularization=KERAS_SSD_L2)
    floors[name] = {"L2 term at initialization": regularization_loss(freeze(fresh, None)),
                    **{f"frozen up to {point}": frozen_regularization(fresh, point) for point in ("block5", "fc")}}
floors = pd.DataFrame(floors).T
grown = start_l2.get("finetune", float("nan")) / start_l2.get("scratch", float("nan"))  # section 1's runs
ssd300 = floors.loc["SSD300 (300 px, width 1.0)"]
print(f"SSD300 with its convolutions frozen up to fc: Keras 2 adds {ssd300['frozen up to fc']:.2f} to every "
      f"displayed loss at initialization; the source detector here, trained without weight decay, carries "
      f"{grown:.2f}x a fresh initialization's L2 term (section 1); at that growth the floor would be "
      f"{ssd300['frozen up to fc'] * grown:.1f}, against the study's final data losses of "
      f"{starts['final_data_loss'].min():.2f}-{starts['final_data_loss'].max():.2f} (at this profile's size)")
floors.round(2)

# %% [markdown]
# How to read the lines above against the student's report:
#
# - **The L2 term is a property of the weights.** A pretrained start brings weights trained *without*
#   weight decay (`tlutils pretrain` uses none by default). If their squared norm is larger than a fresh
#   initialization's, the L2 term starts higher (the `start_l2` column), and the line "L2 term before ->
#   after training" says how far weight decay pulled it in. The displayed loss carries that difference;
#   the data loss does not.
# - **Frozen convolutions keep their L2 term in Keras 2, and it scales with the model**: compare the
#   floor printed above for SSD300 with the student's plateau of 9 to 11. If the floor plus a data loss
#   like the study's comes to that range, the plateau needs no failure to learn to explain it; the
#   scratch run of the same thesis, training every kernel at a high rate with weight decay pulling
#   them in, has no such floor.
# - **The displayed loss ranks starts only if the L2 terms are equal**: the first line says whether
#   the displayed loss orders the starts as their mAP does, the second whether scratch ends lowest.
#   When the order by `final_data_loss` differs from the order by `final_loss`, the difference is the
#   weights' size, not detection.
# - **Over-fitting, if any, shows in mAP and validation loss, not in the training loss**: compare
#   `min_val_loss_step` and `best_step` with the schedule's length, and the fourth and fifth panels. A
#   run that over-fits should be judged at its best epoch (`RunConfig(early_stopping=...)` keeps that
#   checkpoint).
# - **The literature**: He et al. (2019) found pre-training mainly speeds early convergence and matters
#   most with little data, and Yosinski et al. (2014) that transferred features beat random ones even
#   after fine-tuning. The early and best lines above say whether the sign world agrees at this scale.
#   Where a pretrained start falls behind scratch, possible reasons to test next: its pretraining task
#   (classifying small crops, or detecting other countries' signs) taught features this detector uses
#   poorly, or its larger weights and the fresh fc6/fc7 need more steps than a fresh start.

# %% [markdown]
# ## 7. A checklist for the thesis
#
# 1. **Split the loss.** Log localization, confidence and regularization separately; compare variants
#    on the MultiBox part only. Prefer weight decay in the optimizer to L2 terms inside the loss.
# 2. **Know your framework's freezing rules.** Keras 2 counts frozen layers' penalties, Keras 3 does
#    not; recompile after changing `trainable`; run frozen BatchNorm layers with `training=False`.
# 3. **Match the preprocessing to the weights** (caffe for VGG16's ImageNet weights) and check it: a
#    transferred detector evaluated before any training should already score well on its source.
# 4. **Fine-tune at a low rate**, after the new head has settled (train it first, frozen base).
# 5. **Judge by mAP** (VOC mAP@0.5, and COCO mAP when box tightness matters) on a fixed validation set,
#    with several seeds; report mean and spread.
# 6. **Give every variant the same budget** (optimizer steps, not epochs: few-shot sets have tiny
#    epochs) and the same data, and keep the few-shot subsets nested and stratified.
# 7. **Measure speed, do not assume it**: images per second at steady state, per variant, on an idle
#    machine.
# 8. **Do not read the first losses**: they depend on initialization and input scale, not on the
#    variant's merit.

# %% [markdown]
# ## Summary
#
# - With an L2 penalty inside the loss, the total carries an offset that depends on the weights (the
#   epoch-0 L2 terms of section 1), and under Keras 2 frozen layers keep theirs forever: a floor that
#   looks like a stall without being a failure to learn.
# - Preprocessing must match the weights; frozen features cannot adapt to a mismatch, scratch can
#   (section 2 measured what a swap costs).
# - Section 3 measured, per fine-tuning rate, what is left of the zero-shot score at the end.
# - Rank variants by mAP: section 0 printed whether the losses gave the same order in this run.
# - Freezing saves backward work where the feature maps are large, but not the forward pass (section 5
#   printed this run's fastest variant against scratch); `RunConfig(cache_features=True)` computes the
#   frozen part's features once and removes that pass too.
# - The student's own experiment (section 6) printed, per start, the L2 term before and after
#   training, whether the displayed loss orders the starts as mAP does, and which starts over-fitted.
#
# ## Exercises
#
# 1. Rerun notebook 05 and this notebook with `L2_REGULARIZATION = 0.0`. Which plots change, and which
#    conclusions?
# 2. In section 2, train `freeze:fc` on the target with a source detector trained with "tf"
#    preprocessing but evaluated with "caffe". What would you expect, and why can the runner not do
#    this out of the box?
# 3. Add `0.1` to `LEARNING_RATE_FACTORS`. Is an even lower rate better within this budget?
# 4. Add `"imagenet"` to `SOURCE_STARTS` with VGG16's ImageNet weights (`keras.applications.VGG16`
#    downloads them once; the runner feeds that start the "caffe" inputs they expect, section 2) and
#    set `RUN_SOURCE_STUDY = True`. Where does its L2 term start, and why?
# 5. Time one training step of the detector frozen up to each freeze point (`SSDTrainer.train_on_batch`
#    on a fixed batch, after a warm-up). Plot seconds per step against the trainable share. Where does
#    the curve bend, and why there?
