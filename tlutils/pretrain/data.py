"""What a pretrained start learns from: data specs (``tlutils.data.specs``), loaded and merged.

A sign-world spec (``"germany"``, ``"synth:germany"``) gives its country's training pool for training
and its validation split for validation; a real dataset (``"gtsdb:<folder>"``, ``"coco:<file>"``, ...)
is split by ``tlutils.data.specs.split_dataset`` in the shares :data:`PRETRAIN_FRACTIONS` (seeded,
stratified; GTSDB's official test frames are never used). Several specs merge into one dataset whose
classes are matched by canonical name (``tlutils.data.classes.canonical_name``: "yield" is "give way"),
e.g. the COCO stand-in of the ``detector`` start: the sign world's other countries together.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

from tlutils.data.specs import fingerprint, load_spec, parse_spec, split_dataset

if TYPE_CHECKING:
    from tlutils.data.records import DetectionDataset

#: Train, val and test shares of a real dataset used for pretraining (no test: it is not a benchmark here).
PRETRAIN_FRACTIONS = (0.9, 0.1, 0.0)


def canonical_specs(specs: Sequence[str]) -> tuple[str, ...]:
    """Each spec in its one canonical spelling (``"germany"`` -> ``"synth:germany"``).

    Raises:
        ValueError: a bad spec, naming the part that is wrong and listing the formats.
    """
    return tuple(str(parse_spec(spec)) for spec in specs)


def spec_fingerprint(spec: str) -> dict[str, Any]:
    """What a pretrained file's key records of a spec: for the sign world the spec and the generator
    version (its renders are deterministic), for real data ``tlutils.data.specs.fingerprint`` of the
    loaded dataset (annotation files and records hashed)."""
    parsed = parse_spec(spec)
    if parsed.format == "synth":
        from tlutils.data.synth import GENERATOR_VERSION

        return {"spec": str(parsed), "generator_version": GENERATOR_VERSION}
    return fingerprint(load_spec(parsed), parsed)


def load_pretrain_data(specs: Sequence[str], split: str, num_images: int, image_size: int,
                       data_dir: str | os.PathLike | None = None, seed: int = 0) -> "DetectionDataset | None":
    """The merged ``split`` ("train" or "val") of ``specs``; ``None`` when it holds no image.

    Sign-world countries share ``num_images`` (the first ones get one more where it does not divide);
    real datasets give their whole ``split`` part (``seed`` draws the split).

    Raises:
        ValueError: a bad spec, or fewer images than countries.
    """
    parsed = [parse_spec(spec) for spec in specs]
    countries = [spec for spec in parsed if spec.format == "synth"]
    if countries and num_images < len(countries):
        raise ValueError(f"{num_images} images cannot be shared by the {len(countries)} countries {specs}")
    shares = iter([num_images // len(countries) + (index < num_images % len(countries))
                   for index in range(len(countries))])
    datasets = []
    for spec in parsed:
        if spec.format == "synth":
            datasets.append(load_spec(replace(spec, split=split), num_images=next(shares), image_size=image_size,
                                      data_dir=data_dir))
        else:
            datasets.append(split_dataset(load_spec(spec), spec, seed=seed, fractions=PRETRAIN_FRACTIONS)[split])
    datasets = [dataset for dataset in datasets if len(dataset)]
    return merge_datasets(datasets) if datasets else None


def merge_datasets(datasets: Sequence["DetectionDataset"]) -> "DetectionDataset":
    """One dataset of all records, classes matched by canonical name.

    Where the class tables agree (one canonical name per id and one id per name, as across the sign
    world's countries) ids and names are kept; otherwise every class is renumbered ``1..C`` in order of
    first appearance, named canonically, and the records' labels follow.
    """
    from tlutils.data.classes import canonical_name
    from tlutils.data.records import DetectionDataset

    if len(datasets) == 1:
        return datasets[0]
    name = " + ".join(dataset.name for dataset in datasets)
    pairs = {(class_id, canonical_name(class_name)) for d in datasets for class_id, class_name in d.classes.items()}
    superclass_of: dict[int, str | None] = {}
    if len({i for i, _ in pairs}) == len(pairs) == len({n for _, n in pairs}):
        classes = {}
        for dataset in datasets:
            classes.update(dataset.classes)
            superclass_of.update(dataset.superclass_of)
        return DetectionDataset([r for d in datasets for r in d], dict(sorted(classes.items())), superclass_of, name)
    new_id: dict[str, int] = {}
    records = []
    for dataset in datasets:
        for class_id, class_name in dataset.classes.items():
            if canonical_name(class_name) not in new_id:
                new_id[canonical_name(class_name)] = len(new_id) + 1
                superclass_of[len(new_id)] = dataset.superclass_of.get(class_id)
        renumber = {class_id: new_id[canonical_name(n)] for class_id, n in dataset.classes.items()}
        records += [replace(record, labels=[renumber[int(label)] for label in record.labels],
                            class_names=[canonical_name(n) for n in record.class_names]) for record in dataset]
    return DetectionDataset(records, {i: n for n, i in new_id.items()}, superclass_of, name)
