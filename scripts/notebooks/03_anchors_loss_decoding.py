# %% [markdown]
# # 03 · Matching, the MultiBox loss and decoding, by hand and with the library
#
# An SSD outputs, for each of its thousands of default boxes, class scores and four box offsets. Three
# pieces turn this into something trainable and usable: **matching** assigns each default box a target
# (a class and offsets, or background), the **MultiBox loss** compares outputs and targets, and
# **decoding** turns outputs back into a few boxes with non-maximum suppression (NMS). We work each
# out by hand on a case small enough to follow, then check the library against it, then run the
# library on a sign-world scene.

# %% [markdown]
# ## What you will learn
#
# - SSD's **matching**: each ground truth takes its best default box, then every box with IoU >= 0.5
#   takes its best ground truth (two ground truths, five anchors, worked out by hand);
# - the **offset encoding** with the variances 0.1, 0.1, 0.2, 0.2;
# - the **MultiBox loss** by hand: softmax cross-entropy with **hard negative mining** plus Smooth L1,
#   both divided by the number of matched boxes;
# - **NMS by hand** and the full decoding, and why detections keep scores as low as 0.01;
# - what an untrained detector's first loss looks like (compared with 4 ln(C + 1)), and why the input's
#   scale changes it.

# %% [setup]

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
PROFILE = "cpu"
IOU_THRESHOLD = 0.5  # matching threshold of SSD (section 2.2 of the paper)
NMS_IOU_THRESHOLD = 0.45  # SSD's NMS threshold at inference

# %%
import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from keras import ops

from tlutils.anchors import generate_anchors
from tlutils.boxes import iou, to_centroids, to_corners
from tlutils.data import load_image, synth_dataset
from tlutils.data.pipeline import make_label_map
from tlutils.data.synth import COUNTRIES
from tlutils.decoding import batched_nms, decode_detections
from tlutils.encoding import VARIANCES, encode
from tlutils.losses import multibox_loss
from tlutils.model import anchor_config_for, build_ssd_vgg16
from tlutils.plotting import course_figures_dir, draw_boxes, plot_matched_anchors, save_figure
from tlutils.profiles import get_profile

profile = get_profile(PROFILE)
FIGURES = course_figures_dir(PROFILE)

# %% [markdown]
# ## 1. Matching by hand
#
# The example of d2l.ai's SSD chapter: a dog (class 1) and a cat (class 2) in an image, and five
# anchors. Boxes are normalized corners `(xmin, ymin, xmax, ymax)`. First the IoU of every ground
# truth with every anchor:

# %%
# NBVAL_CHECK_OUTPUT
ground_truth = np.array([[0.10, 0.08, 0.52, 0.92],   # a dog
                         [0.55, 0.20, 0.90, 0.88]])  # a cat
gt_labels = np.array([1, 2])
anchor_corners = np.array([[0.00, 0.10, 0.20, 0.30], [0.15, 0.20, 0.40, 0.40], [0.63, 0.05, 0.88, 0.98],
                           [0.66, 0.45, 0.80, 0.80], [0.57, 0.30, 0.92, 0.90]])
anchors = ops.convert_to_numpy(to_centroids(anchor_corners))  # the library keeps anchors as (cx, cy, w, h)
overlaps = ops.convert_to_numpy(iou(ground_truth, anchor_corners))
pd.DataFrame(overlaps, index=["dog (class 1)", "cat (class 2)"], columns=[f"anchor {i}" for i in range(5)]).round(3)

# %%
figure, ax = plt.subplots(figsize=(4, 4))
draw_boxes(ax, np.full((200, 200, 3), 255), anchor_corners, labels=range(5), normalized=True, color="orange")
draw_boxes(ax, np.full((200, 200, 3), 255), ground_truth, labels=gt_labels, class_names={1: "dog", 2: "cat"},
           normalized=True, color="lime")
save_figure(figure, "03_matching_by_hand", FIGURES)

# %% [markdown]
# **Step 1, each ground truth gets its best anchor.** Take the largest IoU in the whole table,
# 0.746: the cat gets anchor 4. Remove the cat's row and anchor 4's column; the largest left is 0.142:
# the dog gets anchor 1, although they barely overlap. This step guarantees every object at least one
# anchor, however badly the anchors fit it.
#
# **Step 2, every other anchor with IoU >= 0.5 gets its best ground truth.** Anchor 2 overlaps the cat
# by 0.566: class 2. Anchors 0 and 3 stay below 0.5 with everything: background, class 0.
#
# So the class targets are `[0, 1, 2, 0, 2]`. The library's `encode` agrees:

# %%
# NBVAL_CHECK_OUTPUT
box_targets, class_targets = encode(ground_truth, gt_labels, anchors, pos_iou=IOU_THRESHOLD)
print("class targets:", class_targets)
print("box targets:")
print(box_targets.round(3))

# %% [markdown]
# ### Offsets
#
# A matched anchor's box target says how to move and stretch the anchor onto its ground truth, in
# units of the anchor's size and divided by the variances `(0.1, 0.1, 0.2, 0.2)`:
# `((cx_g - cx_a) / w_a / 0.1, (cy_g - cy_a) / h_a / 0.1, log(w_g / w_a) / 0.2, log(h_g / h_a) / 0.2)`.
# For anchor 4 and the cat:

# %%
# NBVAL_CHECK_OUTPUT
cat = ops.convert_to_numpy(to_centroids(ground_truth[1]))
anchor = anchors[4]
by_hand = [(cat[0] - anchor[0]) / anchor[2] / VARIANCES[0], (cat[1] - anchor[1]) / anchor[3] / VARIANCES[1],
           np.log(cat[2] / anchor[2]) / VARIANCES[2], np.log(cat[3] / anchor[3]) / VARIANCES[3]]
print("by hand:    ", np.round(by_hand, 3) + 0.0)  # + 0.0 turns -0.0 into 0.0
print("the library:", box_targets[4].round(3))

# %% [markdown]
# Anchor 1, forced onto the dog at IoU 0.14, has offsets up to 10: a huge correction to learn. Small
# traffic signs are in exactly this situation when they are smaller than the smallest default boxes.

# %% [markdown]
# ## 2. The MultiBox loss by hand
#
# Suppose the network outputs these logits (background, dog, cat) and box offsets for the five anchors.
# Anchor 3 is background but scores the dog highly: a *hard* negative.

# %%
logits = np.array([[2.0, 0.5, -1.0],    # anchor 0: background, and the network agrees
                   [0.5, 1.5, 0.0],     # anchor 1: the dog
                   [0.0, -0.5, 1.0],    # anchor 2: the cat
                   [0.2, 1.0, 0.4],     # anchor 3: background, but it looks like a dog
                   [-0.5, 0.0, 2.0]])   # anchor 4: the cat
box_offsets = box_targets + np.array([0.5, -0.3, 2.0, 0.1])  # every prediction off by the same amounts

# %% [markdown]
# The loss is `(L_conf + L_loc) / N` with `N` the number of positives (3 here).
#
# - `L_conf`: softmax cross-entropy over the positives and the **hardest negatives**: negatives ranked
#   by their background loss `-log p(background)`, at most `neg_pos_ratio` of them per positive. SSD
#   uses 3; with only two negatives here, a ratio of 0.5 (keep one) shows the mining at work.
# - `L_loc`: Smooth L1 of the offset errors of the positives: `0.5 x^2` below 1, `|x| - 0.5` above.

# %%
neg_pos_ratio = 0.5
log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # log softmax
cross_entropy = -log_probs[np.arange(5), np.maximum(class_targets, 0)]
positives, negatives = class_targets > 0, class_targets == 0
num_positives = positives.sum()
num_mined = min(int(neg_pos_ratio * num_positives), negatives.sum())
mined = np.argsort(np.where(negatives, log_probs[:, 0], np.inf))[:num_mined]  # lowest log p(background) first
confidence = (cross_entropy[positives].sum() + cross_entropy[mined].sum()) / num_positives
error = np.abs(box_offsets - box_targets)
localization = np.where(error < 1.0, 0.5 * error**2, error - 0.5)[positives].sum() / num_positives

# %%
# NBVAL_CHECK_OUTPUT
library = multibox_loss(class_targets[None], box_targets[None], logits[None], box_offsets[None],
                        neg_pos_ratio=neg_pos_ratio)
print(f"mined negative: anchor {mined.tolist()}")
for source, parts in [("by hand", (confidence, localization)),
                      ("the library", (float(library["confidence"]), float(library["localization"])))]:
    print(f"{source:>11}: confidence {parts[0]:.4f}  localization {parts[1]:.4f}  loss {sum(parts):.4f}")

# %% [markdown]
# Anchor 3 is mined and anchor 0, which the network already calls background, is left out: the
# negatives that still fool the network are the ones worth learning from. With SSD's ratio of 3 both
# negatives would count.

# %% [markdown]
# ## 3. Non-maximum suppression by hand
#
# At inference each class keeps its boxes scoring above 0.01, and NMS removes a box when a
# higher-scored box *of the same class* overlaps it by more than 0.45. Four predicted boxes, three
# for the dog (scores 0.9, 0.8, 0.7) and one for the cat (0.9):

# %%
# NBVAL_CHECK_OUTPUT
predicted = np.array([[0.10, 0.08, 0.52, 0.92], [0.08, 0.20, 0.56, 0.95], [0.15, 0.30, 0.62, 0.91],
                      [0.55, 0.20, 0.90, 0.88]])
scores, labels = np.array([0.9, 0.8, 0.7, 0.9]), np.array([1, 1, 1, 2])
pd.DataFrame(ops.convert_to_numpy(iou(predicted, predicted)), columns=range(4)).round(3)

# %% [markdown]
# Dog boxes in score order: keep box 0 (0.9). Box 1 overlaps it by 0.737 > 0.45: suppressed. Box 2
# overlaps box 0 by 0.545: suppressed. The cat's only box, 3, is kept: boxes of different classes
# never suppress each other. Kept: boxes 0 and 3. The library's `batched_nms` (groups = classes):

# %%
# NBVAL_CHECK_OUTPUT
print("kept:", batched_nms(predicted, scores, labels, NMS_IOU_THRESHOLD))

# %% [markdown]
# ### The whole decoding
#
# `decode_detections` does everything from raw outputs: softmax per anchor, decoding the offsets
# against the anchors, a score threshold of 0.01 per class, NMS per class and the 200 best per image.
# Take the four boxes as anchors with zero offsets, and class probabilities where each box is mostly
# dog or mostly cat:

# %%
# NBVAL_CHECK_OUTPUT
probabilities = np.array([[0.0, 0.9, 0.1], [0.0, 0.8, 0.2], [0.0, 0.7, 0.3], [0.0, 0.1, 0.9]])
outputs_logits = np.log(probabilities + 1e-9)[None]  # (1, 4, 3): softmax gives the probabilities back
detections = decode_detections(outputs_logits, np.zeros((1, 4, 4)), ops.convert_to_numpy(to_centroids(predicted)))[0]
pd.DataFrame({"label": detections["labels"], "score": detections["scores"].round(3),
              "box": [box.round(2).tolist() for box in detections["boxes"]]})

# %% [markdown]
# Four detections, not two: box 3 is also a (weak) dog and box 2 a (weak) cat, and neither overlaps a
# better box of its own class. Low-scored detections are kept on purpose: mAP ranks detections by
# score, so they can only add recall at the end of the ranking. For pictures, draw only scores above
# 0.3 or so.

# %% [markdown]
# ## 4. The same pieces on a sign-world scene
#
# Now the real thing: the course's detector at the profile's size, its default boxes, and a Belgian
# validation scene. We take the scene with the most signs.

# %%
keras.utils.set_random_seed(0)
num_classes = len(COUNTRIES["belgium"].classes)
model = build_ssd_vgg16(num_classes, input_size=profile.input_size, width=profile.width)
scene_anchors = generate_anchors(anchor_config_for(model))
val_set = synth_dataset("belgium", "val", profile.num_val_images, profile.input_size)
label_map = make_label_map(val_set.classes)
record = max(val_set, key=lambda candidate: candidate.num_boxes)
image, scene_boxes = load_image(record), record.normalized_boxes()
scene_labels = np.array([label_map[label] for label in record.labels])
print(f"{len(scene_anchors)} default boxes; the scene has {record.num_boxes} signs: {', '.join(record.class_names)}")

# %%
# NBVAL_CHECK_OUTPUT
scene_box_targets, scene_class_targets = encode(scene_boxes, scene_labels, scene_anchors, pos_iou=IOU_THRESHOLD)
best_iou = ops.convert_to_numpy(iou(scene_boxes, to_corners(scene_anchors))).max(axis=1)
print(f"positive anchors: {(scene_class_targets > 0).sum()}, ignored: {(scene_class_targets == -1).sum()}, "
      f"background: {(scene_class_targets == 0).sum()}")
sides = np.sqrt(np.prod(record.boxes[:, 2:] - record.boxes[:, :2], axis=1)).astype(float)
pd.DataFrame({"sign": record.class_names, "side (px)": sides.round(1),
              "best IoU with a default box": best_iou.round(3)})

# %%
figure = plot_matched_anchors(image, scene_boxes, scene_anchors, scene_class_targets)
save_figure(figure, "03_matched_anchors", FIGURES)

# %% [markdown]
# Signs whose best IoU stays below 0.5 get a single, forced positive; larger ones get several. Decoding
# is the inverse of encoding: logits that are certain of each anchor's target class, with the box
# targets as offsets, must decode back to exactly the ground truth, one detection per sign after NMS.

# %%
# NBVAL_CHECK_OUTPUT
certain_logits = 20.0 * np.eye(num_classes + 1)[np.maximum(scene_class_targets, 0)]
round_trip = decode_detections(certain_logits[None], scene_box_targets[None], scene_anchors)[0]
recovered = ops.convert_to_numpy(iou(scene_boxes, round_trip["boxes"])).max(axis=1)
print(f"{len(round_trip['boxes'])} detections for {record.num_boxes} signs; best IoU per sign: {recovered.round(4)}")

# %% [markdown]
# ### The loss of an untrained detector
#
# A head that knew nothing and said so, with equal probabilities for all classes, would cost `ln(C + 1)`
# per anchor; with `N` positives and up to `3N` mined negatives, all divided by `N`, its confidence
# loss would be `4 ln(C + 1)`, 10.6 for 13 classes. A randomly initialized head is not that modest, and
# how far off it is depends on the **scale of the input**: He initialization keeps the scale of what a
# layer receives. "caffe" preprocessing (what VGG16's ImageNet weights expect) feeds raw pixels minus
# the ImageNet mean, values of about +-128; "tf" preprocessing scales pixels to [-1, 1].

# %%
# NBVAL_CHECK_OUTPUT
print(f"4 ln(C + 1) = {4 * np.log(num_classes + 1):.2f}")
for preprocessing in ("caffe", "tf"):
    keras.utils.set_random_seed(0)
    untrained = build_ssd_vgg16(num_classes, input_size=profile.input_size, width=profile.width,
                                preprocessing=preprocessing)
    outputs = untrained(image[None].astype("float32"), training=False)
    start = multibox_loss(scene_class_targets[None], scene_box_targets[None], outputs["class_logits"],
                          outputs["box_offsets"])
    print(f"{preprocessing:>5}: logits std {float(ops.std(outputs['class_logits'])):7.2f}, first confidence loss "
          f"{float(start['confidence']):8.2f}, localization {float(start['localization']):7.2f}")

# %% [markdown]
# Both start above `4 ln(C + 1)`: hard negative mining picks exactly the anchors the random head gets
# most wrong. With caffe inputs the logits are an order of magnitude larger and the first loss is in
# the hundreds. Neither is a bug, and training shrinks the logits within the first steps. Still, this
# is why the experiment runner feeds "tf" inputs to every detector it trains from scratch and keeps
# "caffe" for VGG16's ImageNet weights, which were trained on it
# (`tlutils.experiment.default_preprocessing`). And it is one more reason why the *first* logged losses
# of two variants say little about each other, a theme of notebook 06.

# %% [markdown]
# ## Summary
#
# - Matching: each ground truth first takes its best default box (so no object goes unmatched), then
#   every default box with IoU >= 0.5 takes its best ground truth; the rest are background.
# - Targets are offsets relative to the anchor, scaled by the variances 0.1, 0.1, 0.2, 0.2.
# - The MultiBox loss divides both terms by the number of positives; hard negative mining keeps the
#   negatives the network gets most wrong, at most 3 per positive.
# - Decoding = softmax, offsets back to boxes, a 0.01 score threshold, per-class NMS at 0.45, top 200.
# - An uninformed head would start at a confidence loss of `4 ln(C + 1)`; a randomly initialized one
#   starts higher, and far higher with caffe preprocessing's large inputs.
#
# ## Exercises
#
# 1. Move anchor 3 of the by-hand example to `[0.60, 0.25, 0.90, 0.85]`. Which targets change, and
#    why?
# 2. Repeat the loss by hand with SSD's ratio of 3. Which negatives count now, and how much does the
#    confidence loss grow?
# 3. Lower `NMS_IOU_THRESHOLD` to 0.3 and rerun the NMS section. Can a very low threshold hurt a
#    traffic-sign detector? Think of two signs on one pole.
# 4. On the scene of section 4, find the smallest sign's forced anchor and print its box targets. Why
#    is such a target hard to learn?
