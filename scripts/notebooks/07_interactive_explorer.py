# %% [markdown]
# # 07 · An interactive explorer of transfer strategies
#
# Notebooks 05 and 06 fixed the knobs; here you turn them. The explorer trains a short target run
# from the settings of three sliders and redraws its loss and mAP curves after every epoch, then the
# detections of the trained detector. A second tab browses the runs of notebook 05's transfer study
# without training anything.

# %% [markdown]
# ## What you will learn
#
# - to get a feel for the three knobs that decide a transfer run: **how deep to freeze**, the
#   **learning rate** (a log-scale slider, since only its order of magnitude matters) and the **number
#   of target images**;
# - to read a run while it trains: training loss with its L2 part, validation loss and mAP;
# - to connect the short runs you try with the full study of notebook 05.
#
# The explorer works in JupyterLab, Jupyter Notebook and Colab with standard widgets only. In a
# notebook rendered without a kernel (GitHub, or the executed copy of `make course`) the sliders do
# not show; the cells below also call the explorer from code, so its results appear anyway.

# %% [setup]

# %% [markdown]
# ## Parameters
#
# `TRAIN_EPOCHS` sets the budget of a Train run in evaluation epochs of the profile (60 steps each on
# the `cpu` profile: a run takes one to two minutes on a laptop CPU). `L2_REGULARIZATION` is notebook
# 05's, so that the browse tab shows the same study and identical settings are read back instead of
# trained again. `SOURCE_DATA` and `TARGET_DATA` take data specs (`tlutils.data.specs`, as in notebooks
# 05 and 08) instead of the sign world: e.g. `TARGET_DATA = "gtsdb:/data/FullIJCNN2013"` explores real
# German frames, shown whole with the detections found tile by tile.

# %% tags=["parameters"]
PROFILE = "cpu"
COUNTRY = None  # None: the profile's nearest target country
SOURCE_DATA = "synth:belgium"
TARGET_DATA = None  # a data spec; None: COUNTRY of the sign world
TRAIN_EPOCHS = 2
L2_REGULARIZATION = 0.0005

# %%
from IPython.display import Image, display

from tlutils.widgets import TransferExplorer

explorer = TransferExplorer(profile=PROFILE, country=COUNTRY, source_data=SOURCE_DATA, target_data=TARGET_DATA,
                            l2_regularization=L2_REGULARIZATION, train_epochs=TRAIN_EPOCHS)

# %% [markdown]
# ## The explorer
#
# **Train tab.** *freeze up to* moves from "none" (fine-tune everything, at a tenth of the base
# learning rate, as the `finetune` strategy does) through the blocks of notebook 02 to "extras"
# (only the prediction heads train). *base learning rate* runs from 1e-5 to 1e-1. *target images*
# picks the size of the few-shot training set (a stratified subset, the same one the study uses). The
# line next to the button says what will run; **Train** runs it, starting from the course's Belgian
# source detector (notebook 04 trains it; if it is missing, the first click trains it first).
#
# **Browse tab.** Pick a country and a metric: mAP against the number of target images per strategy
# and the comparison table, read from `runs/<profile>/results.csv`.

# %%
explorer

# %% [markdown]
# ## The same from code
#
# Every control is a widget attribute: set its value and call the method its button calls. This is a
# click on **Train** with the sliders where they start (frozen up to `block3`, the profile's learning
# rate, the fewest target images):

# %%
rows = explorer.train()
print(explorer.status.value)
rows[["epoch", "step", "loss", "regularization", "val_loss", "val_map50", "epoch_seconds"]].round(4)

# %% [markdown]
# The explorer keeps its figures as PNG images in `explorer.curves` and `explorer.detections`:

# %%
display(Image(data=bytes(explorer.curves.value)), Image(data=bytes(explorer.detections.value)))

# %% [markdown]
# And the browse tab for the nearest country, as a table (`None` if notebook 05 has not run yet):

# %%
explorer.browse_metric.value = "val_map50"
study = explorer.browse()
study if study is None else study[["strategy", "num_target_images", "val_map50_mean", "val_map50_std", "num_seeds"]]

# %% [markdown]
# ## Things to try
#
# - Freeze up to `fc` and raise the learning rate step by step. At which rate does the first
#   evaluation's mAP start to fall below what a low rate gives? Compare with notebook 06, section 3.
# - Keep everything and change only the number of target images: 5, 10, 50. Which settings profit
#   most from more data?
# - Move the freeze point from "none" to "extras" at a fixed learning rate and watch the
#   `regularization` curve: why does it drop as you freeze more (notebook 06, section 1)?
# - Pick a setting the study has run (the browse table) and train it here: how far is the short run
#   from the full-budget one?

# %% [markdown]
# ## Summary
#
# - The explorer is a thin layer over the experiment runner: every click is a `RunConfig`, trained once
#   and then read back from the results table.
# - Curves update after each evaluation epoch; judge a setting by validation mAP, and read the loss
#   split by its parts.
# - The browse tab shows only runs comparable with the study (same budget, learning rate, penalty,
#   preprocessing).
#
# ## Exercises
#
# 1. Create a second explorer with `country="usa"` and repeat the freeze-depth experiment. Does the best
#    freeze point move deeper or shallower for the larger shift?
# 2. Set `TRAIN_EPOCHS = 5` (the study's full budget on the `cpu` profile). Do settings that the study
#    ran now come back from the results table at once?
# 3. Read `tlutils/widgets.py`: which method would you change to add a "seed" slider, and what must the
#    browse tab then do differently?
