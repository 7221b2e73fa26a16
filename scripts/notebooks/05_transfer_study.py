# %% [markdown]
# # 05 · The transfer study: from Belgian signs to Germany, Sweden and the USA
#
# A Belgian detector exists (notebook 04) and we have a few annotated images from another country.
# What is the best way to get a detector for the new country? Train from scratch, or start from the
# Belgian detector and then fine-tune everything, freeze part of it, train the heads first and then
# everything, or only retrain the heads? This notebook runs the strategies with the same budget of
# optimizer steps, across numbers of target images and across countries at growing distance from
# Belgium, and compares them by validation mAP.

# %% [markdown]
# ## What you will learn
#
# - the transfer strategies of `tlutils.transfer` and their literature: Yosinski et al. 2014 (frozen
#   AnB vs fine-tuned AnB+), the Keras transfer-learning guide (train the new head, then fine-tune at a
#   low rate), TFA 2020 (few-shot detection by retraining the last layers only), He et al. 2019 (scratch
#   catches up given data and time);
# - how to run a fair comparison: the same step budget for every strategy, several seeds, nested
#   few-shot subsets, and one results table for everything (`tlutils.experiment.sweep`);
# - how the best strategy depends on the number of target images and on the size of the domain shift;
# - how deep to freeze.

# %% [setup]

# %% [markdown]
# ## Parameters
#
# `None` means "the profile's": countries, numbers of target images and seeds come from
# `tlutils.profiles` so that every notebook of a profile shares the same runs; so does `SCOPE`, the
# comparison's breadth. The CPU profiles' `"course"` scope (sized for the course's time on two cores;
# docs/performance.md has the measured times) compares four strategies (scratch, frozen convolutions,
# fine-tuning, heads only), the nearest country at every size and the others at the most images.
# `"full"` (the gpu and thesis profiles') adds `two_stage` and every country at every size; the course's
# runs are among its runs, so it trains only the rest (`make course SCOPE=full` runs the course so).
# `SOURCE_DATA` and `TARGET_DATA` take data specs (`tlutils.data.specs`) instead of the sign world: e.g.
# `TARGET_DATA = ["gtsdb:/data/FullIJCNN2013"]` runs the same study on real German frames (notebook 08
# checks such data first), with `CLASSES = "superclass"` as most GTSDB theses. `L2_REGULARIZATION`
# puts ssd_keras' `l2(0.0005)` penalty into the loss, as in the setting notebook 06 diagnoses; it
# changes the logged loss, and notebook 06 reads these very runs.

# %% tags=["parameters"]
PROFILE = "cpu"
SCOPE = None  # None: the profile's; "course" or "full" (two_stage too, every country at every size)
STRATEGIES = None  # None: the scope's; e.g. ["scratch", "finetune", "two_stage"]
COUNTRIES = None
SOURCE_DATA = "synth:belgium"
TARGET_DATA = None  # a data spec or a list of them; None: COUNTRIES of the sign world
CLASSES = "name"  # or "superclass": both sides relabelled to prohibitory, danger, mandatory, other
NUM_TARGET_IMAGES = None
SEEDS = None
FREEZE_DEPTHS = ["freeze:block5", "freeze:fc"]  # added to STRATEGIES for the depth curve
L2_REGULARIZATION = 0.0005
# Section 7: each strategy at its own base learning rate, chosen on val and scored on a test split, with
# forgetting on the source. None: show such runs only if the results table holds them (tlutils sweep
# ... --learning-rates 3e-4 1e-3 3e-3 --evaluate-test --evaluate-source); e.g. [3e-4, 1e-3, 3e-3]: run it.
LEARNING_RATES = None
RATE_STRATEGIES = ["freeze:block3", "finetune", "head_only"]
# Section 8: RATE_STRATEGIES at this many times the profile's steps (the most target images), read
# at its end and at equal training time. None: show such runs only if the results table holds them.
LONG_BUDGET = None

# %%
import pandas as pd

from tlutils.experiment import RunConfig, expand_grid, load_results, resolve, run_key, summarize, sweep
from tlutils.experiment.datasets import label
from tlutils.experiment.results import budget_views
from tlutils.experiment.claims import change_sentence, rank_agreement, rate_confound, setting_verdicts
from tlutils.experiment.selection import learning_rate_table
from tlutils.experiment.sweeps import comparison_configs, run_configs, study_targets
from tlutils.paths import runs_dir
from tlutils.plotting import (course_figures_dir, plot_freeze_depth, plot_history, plot_map_by_shift,
                              plot_map_vs_images, save_figure)
from tlutils.profiles import get_profile
from tlutils.transfer import training_plan, valid_strategies

profile = get_profile(PROFILE)
FIGURES = course_figures_dir(PROFILE)
targets = study_targets(TARGET_DATA, COUNTRIES, PROFILE)  # data specs
countries = [label(spec) for spec in targets]  # how the results table names them ("country")
sizes = list(NUM_TARGET_IMAGES or profile.target_sizes)
seeds = list(SEEDS or profile.seeds)
base = RunConfig(profile=PROFILE, num_target_images=sizes[0], l2_regularization=L2_REGULARIZATION,
                 source_data=SOURCE_DATA, classes=CLASSES)
data_options = (f"--source-data {base.source_data} --target-data {' '.join(targets)} "  # for the commands below
                f"--classes {CLASSES}")
print("strategies you can name:", ", ".join(valid_strategies()))

# %% [markdown]
# The runs of the comparison (`SCOPE`): which strategies, and which countries at which numbers of images.

# %%
scope = SCOPE or profile.scope
configs = comparison_configs(scope, targets, sizes, seeds, base, STRATEGIES)
strategies = list(dict.fromkeys(config.strategy for config in configs))
sizes_of = {}  # country -> the numbers of images the scope trains it at
for config in configs:
    sizes_of.setdefault(label(config.target_data), set()).add(config.num_target_images)
print(f"{scope} scope: {len(configs)} runs of {resolve(base).total_steps} steps, seeds {seeds}; strategies "
      f"{', '.join(strategies)}; " + "; ".join(f"{name} at {sorted(n)} images" for name, n in sizes_of.items()))

# %% [markdown]
# ## 1. The strategies, on the same budget
#
# Every strategy gets exactly the same number of optimizer steps (the profile's `target_steps`),
# split into phases with their own learning rate and frozen part. Fine-tuning a transferred network
# uses a tenth of the base learning rate: its weights already solve a close task, and full-size steps
# would first wreck what transfers (notebook 06 measures this). `two_stage` (in the full scope) first
# trains only the heads, whose rows for new classes start random, then unfreezes everything at the low rate.

# %%
# NBVAL_CHECK_OUTPUT
steps_per_epoch = resolve(base).steps_per_epoch
pd.DataFrame([{"strategy": strategy, "phase": phase.name, "steps": phase.steps, "learning rate": phase.learning_rate,
               "frozen up to": phase.freeze_point or "-"}
              for strategy in strategies + FREEZE_DEPTHS
              for phase in training_plan(strategy, profile.target_steps, profile.learning_rate, steps_per_epoch)])

# %% [markdown]
# ## 2. The sweep
#
# `run_configs` runs the scope's runs in turn (`sweep` runs a whole grid so); each run trains the
# target detector on a stratified few-shot subset (every class present as soon as the number of images
# allows it; for one seed, the 10-image set lies inside the 50-image set) and evaluates it on its
# country's validation images. The Belgian source detector is trained once and shared, and so is the
# evaluation of the weights every transfer run starts from. Finished runs are read back from
# `runs/<profile>/results.csv`, so rerunning this cell, or notebook 06 asking for the same runs, trains
# nothing. With the `cpu` profile this is the long cell of the course.

# %%
results = run_configs(configs)
target = results[results["stage"] == "target"]
summary = summarize(target)
print(f"{target['run_key'].nunique()} target runs, {target['epoch_seconds'].sum() / 60:.1f} min of training")

# %% [markdown]
# ## 3. The comparison table
#
# Final-epoch validation mAP@0.5, mean (and standard deviation) over seeds. Read along a row to see how
# a strategy profits from more target images, down a column to compare strategies at one size.

# %%
cells = [f"{mean:.3f} +- {std:.3f}" for mean, std in zip(summary["val_map50_mean"], summary["val_map50_std"])]
summary.assign(mAP=cells).pivot_table(index=["country", "strategy"], columns="num_target_images", values="mAP",
                                      aggfunc="first")

# %%
figure = plot_map_vs_images(summary)
save_figure(figure, "05_transfer_map_vs_images", FIGURES)

# %% [markdown]
# The literature predicts the shape of these curves -- hypotheses, which the next cell checks against
# this run. With very few images, starting from the source wins by a wide margin and the fewer weights
# a strategy changes, the better it holds up (TFA's finding: retraining only the last layers beats full
# fine-tuning with 1 to 10 shots). With more images, fine-tuning everything catches up and overtakes
# frozen variants (Yosinski's AnB+ beats AnB), and scratch closes the gap last (He et al.: from scratch
# needs more data and longer schedules). In a short CPU run the differences between neighbouring
# strategies are often within the seed spread: look at the error bars before reading a ranking.

# %%
# "beats" / "falls behind" only where the gap exceeds the larger seed std; otherwise "within the spread"
for (country, images), setting in summary.groupby(["country", "num_target_images"]):
    print(f"{country}, {images} images: " + "; ".join(setting_verdicts(setting)))

# %% [markdown]
# ## 4. The size of the shift
#
# The same comparison per country at the largest number of target images. The hypothesis: the nearer
# the country, the more of the source detector carries over as it is; for the USA, whose signs differ
# in shape as well as colour, frozen features fit less well and strategies that adapt more layers gain.
# The cell after the figure names each country's best strategy in this run.

# %%
figure = plot_map_by_shift(summary)
save_figure(figure, "05_transfer_map_vs_shift", FIGURES)

# %%
largest = summary[summary["num_target_images"] == max(sizes)]
for country, setting in largest.groupby("country"):
    best = setting.loc[setting["val_map50_mean"].idxmax()]
    print(f"{country}, {max(sizes)} images: best {best['strategy']} ({best['val_map50_mean']:.3f})")

# %% [markdown]
# ## 5. How deep to freeze?
#
# Yosinski et al. copied the first *n* layers of a network and either froze or fine-tuned them.
# Freezing the first, generic layers cost nothing; freezing into the middle hurt, because co-adapted
# layers were split; fine-tuning everything was best. Here is the same curve for the nearest country
# at the largest number of images: from fine-tuning everything (left) to retraining only the heads
# (right), with scratch as the dashed reference.

# %%
depth_grid = {"country": targets[:1], "strategy": FREEZE_DEPTHS, "num_target_images": sizes[-1:], "seed": seeds}
depth_results = pd.concat([target, sweep(depth_grid, base=base)], ignore_index=True)
depth_summary = summarize(depth_results[(depth_results["country"] == countries[0])
                                       & (depth_results["num_target_images"] == sizes[-1])])
figure = plot_freeze_depth(depth_summary)
save_figure(figure, "05_transfer_freeze_depth", FIGURES)

# %% [markdown]
# ## 6. Inside one setting: the learning curves
#
# Final numbers hide how the runs got there. For the nearest country and the fewest images:
# validation mAP and loss per epoch (`two_stage`, in the full scope, switches from heads-only to
# everything halfway through). Where each strategy started (its first evaluation) and ended, mean over seeds:

# %%
few_shot = target[(target["country"] == countries[0]) & (target["num_target_images"] == sizes[0])]
figure = plot_history(few_shot, metrics=["val_map50", "val_loss", "loss"], x="step")
save_figure(figure, "05_transfer_curves", FIGURES)

# %%
by_epoch = few_shot.groupby(["strategy", "epoch"])["val_map50"].mean().dropna()
for strategy, curve in by_epoch.groupby(level="strategy"):
    print(change_sentence(strategy, curve.iloc[0], curve.iloc[-1]))

# %% [markdown]
# Compare the training loss panel with the mAP panel (the two loss panels share one scale, so their
# heights compare). With an L2 penalty inside the loss, the total depends on how many weights a
# strategy trains, so the hypothesis is that the order of the strategies by loss is not their order by
# mAP; the next cell checks it on the final epochs (notebook 06 takes it apart).

# %%
final_few_shot = few_shot.loc[few_shot.groupby("run_key")["epoch"].idxmax()]
print(rank_agreement(final_few_shot.groupby("strategy")[["loss", "val_map50"]].mean(), by="loss"))

# %% [markdown]
# ## 7. Each strategy at its own learning rate, scored on a test split
#
# The table of section 3 gives every strategy the profile's base rate (fine-tuning a tenth of it), so
# a gap between two strategies may be a gap between two rates. A supervisor's comparison sweeps the
# rate per strategy, **chooses** each strategy's rate on the validation images and **reports** it on
# a test split that took no part in the choice (the sign world renders it from its own seed), and
# adds what the transfer **forgot**: mAP back on the source's validation images, before minus after
# training (`tlutils.experiment.selection.learning_rate_table`). It costs a run per rate, strategy,
# country and seed, so it runs only when `LEARNING_RATES` asks; otherwise this section shows the
# runs the results table already holds.

# %%
if LEARNING_RATES:
    rate_grid = {"country": targets, "strategy": RATE_STRATEGIES, "num_target_images": sizes[-1:],
                 "seed": seeds, "learning_rate": list(LEARNING_RATES)}
    sweep(rate_grid, base=base.replace(evaluate_test=True, evaluate_source=True))
rates = learning_rate_table(load_results(runs_dir(PROFILE)), default_rate=profile.learning_rate)
rates = rates[rates["l2_regularization"] == L2_REGULARIZATION] if not rates.empty else rates
if rates.empty:
    print("no learning-rate sweep with a test split in the results table yet: set LEARNING_RATES, or run\n"
          f"  tlutils sweep --profile {PROFILE} {data_options} --strategies {' '.join(RATE_STRATEGIES)} "
          f"--num-target-images {sizes[-1]} --seeds {' '.join(map(str, seeds))} --learning-rates 3e-4 1e-3 3e-3 --evaluate-test "
          f"--evaluate-source --l2-regularization {L2_REGULARIZATION}")
else:
    for (country, images), setting in rates.groupby(["country", "num_target_images"]):
        print(f"{country}, {images} images: {rate_confound(setting)}; "
              + "; ".join(setting_verdicts(setting, "test_map50")))
rates.filter(["country", "num_target_images", "strategy", "learning_rate", "rates_tried", "val_map50_mean",
              "test_map50_mean", "test_map50_std", "test_map50_at_default", "forgetting_mean", "forgetting_std",
              "num_seeds"]).round(3)

# %% [markdown]
# ## 8. Is the ranking a property of the short budget?
#
# Every run above trains the profile's few hundred steps. Two other views of the same strategies at
# the most target images: **four times the steps** (does a strategy that adapts more weights catch up
# with time?), and **equal training time** instead of equal steps (a strategy that trains fewer
# weights makes more steps per second: is that the freezing speed-up the student hoped for?). The long
# runs are evaluated after every profile budget of steps, so the equal-time view takes each run at its
# last evaluation within the seconds the slowest run took for the profile's steps. They run when `LONG_BUDGET` asks.

# %%
long_steps = (LONG_BUDGET or 4) * profile.target_steps
long_grid = {"country": targets, "strategy": RATE_STRATEGIES, "num_target_images": sizes[-1:], "seed": seeds}
long_base = base.replace(total_steps=long_steps, steps_per_epoch=profile.target_steps)  # evaluated at the short budget too
if LONG_BUDGET:
    sweep(long_grid, base=long_base)
table = load_results(runs_dir(PROFILE))
long_runs = table[table["run_key"].isin({run_key(config) for config in expand_grid(long_grid, long_base)})]
if long_runs.empty:
    print(f"no runs of {long_steps} steps in the results table yet: set LONG_BUDGET = {long_steps // profile.target_steps}, "
          f"or run  tlutils sweep --profile {PROFILE} {data_options} --strategies {' '.join(RATE_STRATEGIES)} "
          f"--num-target-images {sizes[-1]} --seeds {' '.join(map(str, seeds))} --total-steps {long_steps} --steps-per-epoch "
          f"{profile.target_steps} --l2-regularization {L2_REGULARIZATION}")
else:
    for view, summary_of_view in budget_views(long_runs, profile.target_steps).items():
        for (country, images), setting in summary_of_view.groupby(["country", "num_target_images"]):
            reached = ", ".join(f"{name} {steps:.0f}" for name, steps in zip(setting["strategy"], setting["steps"]))
            print(f"{country}, {images} images, {view}: " + "; ".join(setting_verdicts(setting))
                  + f" (steps: {reached})")

# %% [markdown]
# ## Summary
#
# - Every strategy ran with the same step budget on nested, stratified few-shot subsets, and all runs
#   landed in one tidy table; `summarize` gives mean and spread over seeds.
# - Section 3 printed, per country and size, whether the best transfer beats scratch and whether
#   fine-tuning beats the best frozen variant in this run, each "beats" only where the gap exceeds the
#   seed spread; the literature's expectation is that the source pays most with few images and a small
#   shift, and that adapting more of the network catches up with more images and a larger shift.
# - A fair ranking gives each strategy its own learning rate, chosen on val and reported on a test
#   split, and says what the transfer forgot of the source (section 7; `LEARNING_RATES` runs it).
# - Section 8 reads the same strategies at four times the steps and at equal training time
#   (`LONG_BUDGET` runs it): a ranking that flips there was a property of the short budget.
# - Compare strategies with error bars: on short CPU runs the seed-to-seed spread is often of the size
#   of the differences (the "within the seed spread" verdicts above).
# - With a full run (`tlutils sweep --profile gpu`, or the `gpu` profile in this notebook) the curves
#   are smoother and the differences clearer.
#
# ## Exercises
#
# 1. Set `SCOPE = "full"` and rerun: only the runs the course scope left out train (`two_stage`, and
#    the farther countries at the smaller sizes). Does the Keras guide's two-stage recipe beat
#    fine-tuning at once here? What do the new settings' verdicts in section 3 say?
# 2. Add a seed (`SEEDS = [0, 1, 2, 3]`). Do the error bars shrink? Which rankings survive?
# 3. For the USA, which classes does the Belgian head start from? Look up `tlutils.transfer.class_map_for`
#    and the USA's class table in notebook 01.
# 4. Run the study with `L2_REGULARIZATION = 0.0`. Does any mAP change? Which loss column does?
