# %% [markdown]
# # 02 · SSD-VGG16: blocks, feature maps and default boxes
#
# SSD (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016) puts a few extra convolution
# layers on top of VGG16 and predicts, from six feature maps of decreasing size, a class and a box
# offset for every *default box* (anchor) of every cell. This notebook takes the network apart along
# the lines that transfer learning cuts it: its blocks.

# %% [markdown]
# ## What you will learn
#
# - the blocks of SSD-VGG16 (VGG16's five conv blocks, the converted `fc` layers, SSD's extra layers,
#   the prediction heads) and the **freeze points** between them;
# - how the six prediction layers' **feature map sizes** set the number and size of the default boxes,
#   for the paper's SSD300 (8732 boxes) and for this course's smaller CPU model;
# - where the **parameters** are, and what freezing a block leaves to train;
# - why an L2 penalty inside the loss is worth about 9 loss units for SSD300 before training starts.

# %% [setup]

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
PROFILE = "cpu"
SHOWN_FEATURE_LAYERS = ["block1_conv2", "block3_conv3", "conv4_3_norm", "fc7", "conv8_2", "conv9_2"]
L2_REGULARIZATION = 0.0005  # the kernel penalty of the popular Keras port ssd_keras

# %%
import keras
import pandas as pd

from tlutils.anchors import AnchorConfig
from tlutils.data import load_image, synth_dataset
from tlutils.data.synth import COUNTRIES
from tlutils.model import (FREEZE_POINTS, LAYERS_BY_BLOCK, PREDICTION_LAYERS, anchor_config_for, build_ssd_vgg16,
                           feature_map_sizes, freeze, regularization_loss, trainable_summary)
from tlutils.plotting import (course_figures_dir, plot_anchors, plot_feature_maps, plot_parameters_per_block,
                              save_figure)
from tlutils.profiles import get_profile

profile = get_profile(PROFILE)
FIGURES = course_figures_dir(PROFILE)
num_classes = len(COUNTRIES["belgium"].classes)  # the source detector's classes; background is added
keras.utils.set_random_seed(0)  # the same random weights on every run

# %% [markdown]
# ## 1. The paper's SSD300
#
# `build_ssd_vgg16` builds the whole detector from spec tables: VGG16 configuration D (13 convs in 5
# blocks), pool5 changed to 3x3 stride 1, fc6 as a 3x3 convolution with dilation 6 and fc7 as a 1x1
# convolution (1024 channels each), conv4_3 L2-normalized with a learned scale that starts at 20, the
# extra layers conv8 to conv11, and a class head and a box head on each of the six prediction layers.
# At width 1.0 and a 300-pixel input it is the paper's SSD300. With Pascal VOC's 20 classes it has the
# well-known 26.3 million parameters and 8732 default boxes:

# %%
# NBVAL_CHECK_OUTPUT
ssd300 = build_ssd_vgg16(20, input_size=300, width=1.0, l2_regularization=L2_REGULARIZATION)
print(f"parameters:        {ssd300.count_params():,}")
print(f"feature maps:      {feature_map_sizes(ssd300)}")
print(f"default boxes:     {anchor_config_for(ssd300).num_anchors} (paper: {AnchorConfig.ssd300().num_anchors})")
print(f"outputs:           {[(name, tuple(output.shape)) for name, output in ssd300.output.items()]}")

# %% [markdown]
# The layers fall into eight blocks. A **freeze point** names a block: freezing "up to `block3`"
# freezes `block1`, `block2` and `block3` and trains the rest. `fc` closes VGG16 (the layers ImageNet
# weights exist for); `extras` are SSD's own layers; `heads` are the class and box predictors, the only
# part that depends on the number of classes.

# %%
# NBVAL_CHECK_OUTPUT
pd.Series({block: ", ".join(names) for block, names in LAYERS_BY_BLOCK.items()}, name="layers").to_frame()

# %% [markdown]
# ### An L2 penalty is part of the loss
#
# The widely used Keras port of SSD (ssd_keras) puts `l2(0.0005)` on every conv kernel, and Keras
# *adds* these penalties to the loss it displays. At He initialization their sum is already about 9
# for SSD300: a "loss of 9" before the network has seen an image. Notebook 06 shows how this term
# makes the losses of pretrained and frozen variants impossible to compare with scratch training.

# %%
# NBVAL_CHECK_OUTPUT
print(f"L2 term of the freshly built SSD300: {float(regularization_loss(ssd300)):.2f}")

# %% [markdown]
# ## 2. The course's CPU-sized model
#
# A profile shrinks the network: fewer channels (`width`) and a smaller input. The blocks and layer
# names stay the same, so every freeze point means the same thing; only the feature maps shrink, and
# with them the number of default boxes.

# %%
model = build_ssd_vgg16(num_classes, input_size=profile.input_size, width=profile.width)
config = anchor_config_for(model)
print(f"{PROFILE} profile: input {profile.input_size} px, width {profile.width}, {model.count_params():,} parameters")

# %%
# NBVAL_CHECK_OUTPUT
sizes = feature_map_sizes(model)
pd.DataFrame({
    "prediction layer": [spec.name for spec in PREDICTION_LAYERS],
    "feature map": [f"{size}x{size}" for size in sizes],
    "boxes per cell": config.boxes_per_cell,
    "default boxes": [size * size * boxes for size, boxes in zip(sizes, config.boxes_per_cell)],
    "scale (of the image side)": config.scales[:-1],
})

# %% [markdown]
# ### Feature maps
#
# Each block halves the resolution (pool5 excepted) while the channels grow. The first row below is
# `block1` at the full input resolution, the last rows are the coarse maps that predict the largest
# boxes (mean over channels first, then a few single channels). The weights are random here, so the
# maps show the image through random filters; after training (notebook 04) deep maps respond to signs.

# %%
scene = synth_dataset("belgium", "val", 4, profile.input_size)[1]
image = load_image(scene)
figure = plot_feature_maps(model, image, SHOWN_FEATURE_LAYERS)
save_figure(figure, "02_feature_maps", FIGURES)

# %% [markdown]
# ### Default boxes on an image
#
# Every cell of a prediction layer carries the same few boxes: aspect ratios 1, 2 and 1/2 (and 3 and
# 1/3 on the 6-box layers), plus an extra square box of scale sqrt(s_k s_k+1). The panels draw the
# boxes of the cell at the image centre (yellow) and the centres of all cells (dots). Small boxes on
# fine maps, large boxes on coarse maps: that is how one forward pass covers every object size.

# %%
figure = plot_anchors(image, config)
save_figure(figure, "02_anchors_per_layer", FIGURES)

# %% [markdown]
# ## 3. Parameters per block, and freezing
#
# `trainable_summary` counts the parameters per block. In SSD300 most sit in `block4`, `block5` and
# `fc`, the layers with 512 and 1024 channels; the early blocks that see the raw pixels are tiny. In a
# narrow CPU model the heads take a larger share: their output channels (boxes x classes) do not shrink
# with the width.

# %%
# NBVAL_CHECK_OUTPUT
summary = trainable_summary(model)
summary

# %%
figure = plot_parameters_per_block(summary)
save_figure(figure, "02_parameters_per_block", FIGURES)

# %% [markdown]
# `freeze(model, point)` sets `trainable = False` on every layer up to the point (compile again
# afterwards: Keras reads `trainable` when it builds the training step). The share of parameters left
# to train falls slowly at first and steeply after `block3`:

# %%
# NBVAL_CHECK_OUTPUT
trainable_share = {}
for point in (None, *FREEZE_POINTS[:-1]):
    counts = trainable_summary(freeze(model, point))[["trainable", "frozen"]].sum()
    trainable_share[f"up to {point}" if point else "nothing frozen"] = round(counts["trainable"] / counts.sum(), 4)
freeze(model, None)
pd.Series(trainable_share, name="trainable share").to_frame()

# %% [markdown]
# Freezing `block1` to `block3` removes few parameters but, as notebook 06 measures, a good part of
# the backward pass; freezing up to `extras` leaves only the heads, TFA's few-shot recipe. Either way
# every image still runs forward through the frozen layers.

# %% [markdown]
# ## Summary
#
# - SSD-VGG16 = VGG16 (blocks 1-5, fc6/fc7 as convolutions) + extra layers + a class and a box head on
#   each of six feature maps; SSD300 has 26.3 M parameters (VOC) and 8732 default boxes.
# - Feature-map sizes decide the default boxes: the CPU model keeps the structure with fewer, coarser
#   cells.
# - Freeze points cut the network between blocks; parameters concentrate in the deep blocks, so the
#   trainable share drops steeply only after `block3`.
# - With `l2(0.0005)` the loss carries an L2 term of about 9 for SSD300 before any training.
#
# ## Exercises
#
# 1. Build the model at an input of 300 and width 0.25. Which feature-map sizes and how many default
#    boxes do you get? Why is the number of parameters almost unchanged?
# 2. Compute by hand the parameters of `fc6` in SSD300 (3x3 kernel, dilation 6, 512 -> 1024 channels)
#    and check it against `trainable_summary`.
# 3. Rebuild SSD300 with `l2_regularization=0.0005` and freeze it up to `fc`. What does
#    `regularization_loss` report now, and why (Keras 3 collects the penalties of trainable weights
#    only)?
# 4. Draw the default boxes of the cell in the top-left corner instead of the centre. Which boxes stick
#    out of the image, and does that matter for matching?
