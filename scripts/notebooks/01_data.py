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
#
# `GTSDB_DATA` and `BTSD_DATA` are the real datasets of section 2, as data specs, the syntax notebook
# 08's `SOURCE_DATA` and `TARGET_DATA` take: `"gtsdb:<folder>"` (the folder with `gt.txt` and the
# frames; add `,on_error=skip` for the full official set, which lists one sign twice) and
# `"btsd:<BTSD_training_GTclear.txt>"` (add `,images=<folder>` if you have the images). `None` takes the
# sample in `../shared/data` beside the project when it is there, else a small stand-in; each dataset
# is decided on its own.

# %% tags=["parameters"]
PROFILE = "cpu"
GALLERY_IMAGES_PER_COUNTRY = 4  # scenes per country in the gallery
SHOWN_REAL_IMAGES = 4  # GTSDB images drawn with their boxes
GTSDB_DATA = None  # e.g. "gtsdb:/data/FullIJCNN2013"; None: ../shared/data's sample, else a stand-in
BTSD_DATA = None  # e.g. "btsd:/data/BTSD_training_GTclear.txt"; None: likewise

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image

from tlutils.data import load_spec, parse_spec, synth_dataset
from tlutils.data.export import benchmark_spec
from tlutils.data.synth import COUNTRIES, COUNTRY_SHIFT, SIGN_CLASSES
from tlutils.paths import shared_data_dir
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
# Point `GTSDB_DATA` and `BTSD_DATA` at your copies (Parameters above). Left at `None`, each comes from
# the sample in `../shared/data` next to this project when you have it (the project's own machines
# do), else from a tiny stand-in in the same format, cut from sign-world scenes
# (`tlutils.data.export.benchmark_format_example`), so that everything below runs anywhere.

# %%
shared = shared_data_dir()  # ../shared/data beside the project, or None
gtsdb_data = benchmark_spec("GTSDB_DATA", GTSDB_DATA, "gtsdb", shared)
btsd_data = benchmark_spec("BTSD_DATA", BTSD_DATA, "btsd", shared)
print(f"GTSDB: {gtsdb_data}\nBTSD:  {btsd_data}")

# %% [markdown]
# Every loader returns a `DetectionDataset` of `DetectionRecord`s: pixel corners `(xmin, ymin, xmax,
# ymax)` (GTSDB's inclusive `rightCol` becomes `xmax = rightCol + 1`), the dataset's own class ids and
# names, and a **superclass** from one shared space, so that Belgian and German labels can be
# compared. The raw lines first, then what the loader made of them:

# %%
gt_file = Path(parse_spec(gtsdb_data).path).expanduser() / "gt.txt"
print("".join(gt_file.read_text().splitlines(keepends=True)[:3]))
gtsdb = load_spec(gtsdb_data)  # load_gtsdb(folder) underneath
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
btsd = load_spec(btsd_data)  # load_btsd(annotation_file, image_root) underneath
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
