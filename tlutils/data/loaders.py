"""Dataset loaders, all returning a :class:`~tlutils.data.records.DetectionDataset`, and few-shot subsets.

==================  =================================================  ===========================
loader              source                                             module
==================  =================================================  ===========================
``load_gtsdb``      GTSDB folder: ``00000.ppm`` (.jpg, .png) + gt.txt  :mod:`tlutils.data.gtsdb`
``load_btsd``       BelgiumTS ``BTSD_*_GTclear.txt``                   :mod:`tlutils.data.btsd`
``load_coco``       COCO JSON (also the synthetic sign world's)        :mod:`tlutils.data.formats`
``load_voc``        Pascal VOC XML folder                              :mod:`tlutils.data.formats`
``load_yolo``       YOLO txt labels + classes file                     :mod:`tlutils.data.formats`
==================  =================================================  ===========================

Every loader takes ``on_error="raise"`` (default: the first bad item raises an
:class:`~tlutils.data.records.AnnotationError`, a ``ValueError`` naming file and line) or
``on_error="skip"`` (bad images are dropped, listed in ``dataset.skipped`` and summed up in one warning).
Boxes may stick out of the image by :data:`~tlutils.data.records.BORDER_TOLERANCE` pixels; they are
clipped.

No loader lets a wrong count through: a box listed twice (same image, box and class) is a bad item
(skipped, only the repeat goes), ``xmax < xmin`` is reported as inverted corners with the values, and a
load that finds no image at all raises unless called with ``allow_empty=True``. Text annotation files
may start with a UTF-8 byte order mark (Windows editors write one).

``subset(dataset, num_images, seed)`` draws the few-shot training sets of the transfer experiments.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .btsd import load_btsd
from .formats import load_coco, load_voc, load_yolo
from .gtsdb import load_gtsdb
from .records import DetectionDataset


def stratified_order(dataset: DetectionDataset, seed: int) -> list[int]:
    """A seeded ordering of the dataset's image indices whose every prefix covers as many classes as it can.

    First one pass over the classes, rarest (fewest images) first: each class not yet covered takes
    the first image holding it in a seeded shuffle. Then the remaining images follow in that shuffle, so
    beyond one image per class a prefix keeps the data's own class frequencies (background images included).
    """
    shuffled = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    classes_in = [set(record.labels.tolist()) for record in dataset]
    images_per_class = Counter(class_id for present in classes_in for class_id in present)
    order, covered = [], set()
    for class_id in sorted(images_per_class, key=lambda class_id: (images_per_class[class_id], class_id)):
        if class_id in covered:
            continue
        # an image holding an uncovered class has not been taken yet, since taking it would cover it
        index = next(index for index in shuffled if class_id in classes_in[index])
        order.append(index)
        covered |= classes_in[index]
    taken = set(order)
    return order + [index for index in shuffled if index not in taken]


def subset(dataset: DetectionDataset, num_images: int, seed: int = 0) -> DetectionDataset:
    """A few-shot subset of ``num_images`` images: stratified and nested.

    Stratified: every class appears once ``num_images`` allows it (see :func:`stratified_order`).
    Nested: for one seed, the subset of ``n`` images lies inside the subset of ``m > n`` images, so a
    curve of mAP against training-set size only ever adds images.

    Returns:
        A :class:`DetectionDataset` with the same class table, records in the dataset's order.
    """
    if not 0 <= num_images <= len(dataset):
        raise ValueError(
            f"num_images must be in 0..{len(dataset)} (the images of {dataset.name!r}), got {num_images}")
    chosen = sorted(stratified_order(dataset, seed)[:num_images])
    return dataset.with_records([dataset[index] for index in chosen],
                                name=f"{dataset.name} ({num_images} images, seed {seed})")


__all__ = ["load_btsd", "load_coco", "load_gtsdb", "load_voc", "load_yolo", "stratified_order", "subset"]
