# %% [markdown]
# # 01 · The data: a sign world and real traffic-sign datasets
#
# This course moves a traffic-sign detector from a *source* country (Belgium) to *target* countries
# (Germany, Sweden, the USA). Before any network, we look at the data: which signs a detector must
# find, how the target countries differ from the source, and how large signs are in their images,
# which decides a great deal about SSD later on.

# %% [markdown]
# ## What you will learn
#
# - the embedded **sign world**: street scenes with 14 sign classes drawn in four country styles,
#   rendered on your own machine, so every notebook runs without a download;
# - how the **domain shift** from the source is graded: near (Germany), medium (Sweden), large (USA);
# - the formats of the **real datasets** the sign world stands in for, GTSDB (`gt.txt`) and BelgiumTS
#   (`*_GTclear.txt`), and how `tlutils.data` reads every source into one record type;
# - **box statistics** that matter for SSD: box sizes relative to the image and boxes per image.

# %% [setup]

# %% [markdown]
# ## Parameters
#
# `PROFILE` sets every size of the course (`tlutils.profiles`): `"ci"` runs in seconds (tests),
# `"cpu"` is the course on a laptop, `"gpu"` is the paper's SSD300. papermill overrides this cell.

# %% tags=["parameters"]
PROFILE = "cpu"
GALLERY_IMAGES_PER_COUNTRY = 4  # scenes per country in the gallery
SHOWN_REAL_IMAGES = 4  # GTSDB images drawn with their boxes

# %%
import os
from pathlib import Path

import pandas as pd
from IPython.display import Image
from PIL import Image as PILImage

from tlutils.data import load_btsd, load_gtsdb, synth_dataset
from tlutils.data.synth import COUNTRIES, COUNTRY_SHIFT, SIGN_CLASSES
from tlutils.paths import data_dir, project_root
from tlutils.plotting import (box_table, course_figures_dir, plot_box_statistics, save_figure, save_gallery,
                              save_sign_table, show_records)
from tlutils.profiles import get_profile

profile = get_profile(PROFILE)
FIGURES = course_figures_dir(PROFILE)
profile

# %% [markdown]
# ## 1. The sign world
#
# The sign world is procedural: `tlutils.data.synth` draws street scenes (sky, facades or trees, a road
# in perspective, cars, lamp posts) and places 0 to 6 traffic signs on poles, together with sign-like
# objects of no class (parking signs, boards, shop logos, backs of signs) so that colour alone does not
# find a sign. Every class has the same id in every country; class 0 is background. The table says which
# classes exist where.

# %%
# NBVAL_CHECK_OUTPUT
classes = pd.DataFrame(SIGN_CLASSES).set_index("id")
for country, style in COUNTRIES.items():
    classes[country] = ["yes" if sign_id in style.classes else "-" for sign_id in classes.index]
classes

# %% [markdown]
# Each country draws the classes in its own style. The **shift** grades how far a country is from the
# source: Germany changes details (darker red, thinner rings, bolder digits) and adds one class,
# Sweden fills warning and prohibitory signs with yellow, the USA replaces round signs by rectangular
# and diamond ones. A transferred detector should find the near country easy and the far one hard.

# %%
# NBVAL_CHECK_OUTPUT
pd.DataFrame([{"country": name, "shift": style.shift, "classes": len(style.classes),
               "what changes": style.description} for name, style in COUNTRIES.items()])

# %%
Image(filename=save_sign_table(FIGURES / "01_sign_classes.png"))

# %% [markdown]
# A few scenes per country, boxes coloured by superclass (prohibitory red, danger orange, mandatory
# blue, other green). Scene `i` of a country depends only on `(seed, country, i)`, so these are the
# same pictures on every machine.

# %%
Image(filename=save_gallery(FIGURES / "01_sign_world_gallery.png", per_country=GALLERY_IMAGES_PER_COUNTRY))

# %% [markdown]
# ### The training sets of this course
#
# `synth_dataset` (used by the experiment runner too) renders each set once, at the model's input size,
# into `data/synth/` and reads it back with the COCO loader. We ask for exactly the sets the later notebooks
# train on: the Belgian source set and the pool each target country's few-shot subsets are drawn from.
# Rendering them here means notebooks 04 to 07 find them ready.

# %%
sign_world = {"belgium (source)": synth_dataset("belgium", "train", profile.num_source_images, profile.input_size)}
for country in profile.countries:
    pool = synth_dataset(country, "train", max(profile.target_sizes), profile.input_size)
    sign_world[f"{country} ({COUNTRY_SHIFT[country]})"] = pool
for dataset in sign_world.values():
    print(dataset.summary())

# %% [markdown]
# ## 2. The real datasets
#
# The sign world stands in for two public benchmarks:
#
# - **GTSDB** (German Traffic Sign Detection Benchmark, Houben et al., IJCNN 2013): 900 photos of
#   1360x800 pixels, `00000.ppm` ... `00899.ppm`, and one `gt.txt` with a line per sign,
#   `file;leftCol;topRow;rightCol;bottomRow;ClassID`, 43 classes in the categories prohibitory,
#   danger, mandatory and other. The pixel indices are *inclusive*.
# - **BelgiumTS for detection** (BTSD, Timofte et al., MVA 2011): 5,905 training images (JPEG 2000)
#   and `BTSD_training_GTclear.txt` with lines `camera/image;x1;y1;x2;y2;class id;superclass id;`.
#
# A sample of both lives in `../shared/data` next to this project when you have it (the project's own
# machines do). Without it, the next cell writes a tiny stand-in in the same two formats, cut from
# sign-world scenes, so that everything below still runs.

# %%
SHARED_DATA = Path(os.environ.get("TLUTILS_SHARED", project_root().parent / "shared")) / "data"
if SHARED_DATA.is_dir():
    gtsdb_root = SHARED_DATA / "gtsdb-sample"
    btsd_file = SHARED_DATA / "btsd-annotations" / "BTSD_training_GTclear.txt"
    print(f"real data from {SHARED_DATA}")
else:
    example = data_dir() / "real-format-example"
    gtsdb_root, btsd_file = example / "gtsdb", example / "BTSD_training_GTclear.txt"
    gtsdb_root.mkdir(parents=True, exist_ok=True)
    print(f"no {SHARED_DATA}: writing a stand-in in the GTSDB and BTSD formats to {example}")
    gtsdb_class = {"prohibitory": 1, "danger": 18, "mandatory": 35, "other": 12}  # one GTSDB class per superclass
    btsd_class = {"prohibitory": "65;2", "danger": "2;1", "mandatory": "72;3", "other": "1;0"}  # class;superclass
    gt_lines, btsd_lines = [], []
    for index, record in enumerate(synth_dataset("germany", "val", 6, 400)):
        PILImage.open(record.image_path).save(gtsdb_root / f"{index:05d}.ppm")
        for (x0, y0, x1, y1), superclass in zip(record.boxes.astype(int), record.superclasses):
            gt_lines.append(f"{index:05d}.ppm;{x0};{y0};{x1 - 1};{y1 - 1};{gtsdb_class[superclass]}\n")
            btsd_lines.append(f"01/image.{index:06d}.jp2;{x0};{y0};{x1};{y1};{btsd_class[superclass]};\n")
    (gtsdb_root / "gt.txt").write_text("".join(gt_lines))
    btsd_file.write_text("".join(btsd_lines))

# %% [markdown]
# Every loader returns a `DetectionDataset` of `DetectionRecord`s: pixel corners `(xmin, ymin, xmax,
# ymax)` (GTSDB's inclusive `rightCol` becomes `xmax = rightCol + 1`), the dataset's own class ids and
# names, and a **superclass** from one shared space, so that Belgian and German labels can be
# compared. The raw lines first, then what the loader made of them:

# %%
print("".join((gtsdb_root / "gt.txt").read_text().splitlines(keepends=True)[:3]))
gtsdb = load_gtsdb(gtsdb_root)
print(gtsdb.summary())
gtsdb[0]

# %%
signs_first = [record for record in gtsdb if record.num_boxes] + [record for record in gtsdb if not record.num_boxes]
figure = show_records(signs_first[:SHOWN_REAL_IMAGES], columns=2, panel_size=5.0)
save_figure(figure, "01_gtsdb_sample", FIGURES)

# %% [markdown]
# BelgiumTS gives class *ids* without names; the loader names them after their shape (the readme's
# superclasses) and maps the shapes onto the shared superclasses. Without the images (a large
# download) it takes the nominal image size, 1628x1236, so the boxes can still be studied.

# %%
btsd = load_btsd(btsd_file)
print(btsd.summary())
pd.Series(btsd.box_counts()).sort_values(ascending=False).head(8).rename(index=btsd.classes).rename("boxes")

# %% [markdown]
# ## 3. Box statistics
#
# SSD predicts from fixed default boxes (notebook 02): the smallest ones are 0.1 of the image side,
# and everything is warped to a square input first. What matters is therefore a box's side *relative
# to the image*, not in pixels. Left: box side in pixels of the original image; middle: relative to
# the image; right: how many signs an image holds (BTSD's file lists annotated images only, so it has
# no zero).

# %%
datasets = {**sign_world, "GTSDB (real)": gtsdb, "BTSD training (real)": btsd}
figure = plot_box_statistics(datasets)
save_figure(figure, "01_box_statistics", FIGURES)

# %%
box_table(datasets).groupby("dataset", sort=False)["relative_side"].describe(percentiles=[0.1, 0.5, 0.9]).round(3)

# %% [markdown]
# Real signs are small: in GTSDB a sign is 16 to 128 pixels of a 1360-pixel-wide photo, a few percent
# of the image side, well below SSD300's smallest default box (0.1). SSD matches such a box only through
# its "best anchor" rule (notebook 03), which is one reason SSD is weak on small signs (Arcos-Garcia et
# al. 2018 report 66 mAP for SSD on GTSDB against 96 for Faster R-CNN). The sign world's signs are
# larger relative to its small images, on purpose: a CPU-sized SSD (96 to 160 pixels) can learn them
# in minutes, and the transfer effects we study do not depend on that choice.

# %% [markdown]
# ## Summary
#
# - The sign world renders street scenes in four country styles with one shared class table;
#   Germany, Sweden and the USA are a near, medium and large shift from the Belgian source.
# - GTSDB, BelgiumTS, COCO, VOC and YOLO files all load into `DetectionDataset`s of pixel-corner
#   records with a shared superclass; loaders name the file and line of every bad annotation.
# - Traffic signs are small objects: judge box sizes relative to the image, since the detector sees
#   every image warped to its square input.
#
# ## Exercises
#
# 1. Render 8 scenes of `"usa"` with `tlutils.data.synth.render_scene` and count how many signs have
#    no Belgian counterpart in *shape*. Which superclass changes most?
# 2. Load the BTSD testing file (`BTSD_testing_GTclear.txt`) and compare its superclass counts with
#    training's. Would a detector trained on one superclass mix do well on the other?
# 3. At an input of 300 pixels, which fraction of GTSDB's boxes are smaller than SSD300's smallest
#    default box (30 pixels)? Use `box_table` and the image width 1360.
# 4. Write three lines of a `gt.txt` with a bad line (a missing field, a box outside the image) and
#    load it with `on_error="skip"`. What does `dataset.skipped` tell you?
