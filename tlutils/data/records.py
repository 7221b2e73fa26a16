"""One record type for every detection source, the dataset that holds them, and reading their images.

Every loader (:mod:`tlutils.data.loaders`) turns its format into :class:`DetectionRecord` objects:

- ``boxes`` are **pixel** corners ``(xmin, ymin, xmax, ymax)`` in continuous image coordinates: the
  pixel in column ``c`` covers ``[c, c + 1)``, so a box around the whole image is
  ``(0, 0, width, height)``. The input pipeline normalizes them (:meth:`DetectionRecord.normalized_boxes`).
- ``labels`` are the **dataset's own** class ids (GTSDB 0..42, BelgiumTS -1..210, COCO category ids);
  mapping them to the model's ``1..C`` (0 = background) is the pipeline's job, not the loader's.
- ``superclasses`` place each box in one space shared by all sources, :data:`SUPERCLASSES`, the GTSDB
  competition's categories; ``None`` where the source does not say.

Bad input is reported as :class:`AnnotationError` (a ``ValueError``) naming the file and line;
loaders called with ``on_error="skip"`` keep going and list what they dropped as :class:`SkippedItem`
in :attr:`DetectionDataset.skipped`. A load that ends with no image at all is an error too, unless
the loader is called with ``allow_empty=True``: it is almost always a wrong path or a truncated file.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar, overload

import numpy as np
from PIL import Image, UnidentifiedImageError, features

SUPERCLASSES: tuple[str, ...] = ("prohibitory", "danger", "mandatory", "other")
"""The shared superclass space: the GTSDB categories (Houben et al. 2013). The competition scored the
first three; "other" is a label, not a scored category."""

BORDER_TOLERANCE = 2.0
"""Pixels a box may stick out of its image before it counts as an error; within the tolerance the box
is clipped to the image. Annotators' clicks on the border land a pixel or two outside (BelgiumTS has a
box starting at x = -1.45), and Pascal VOC's 1-based coordinates put a box drawn from a 0 edge at -1."""

OnError = Literal["raise", "skip"]
T = TypeVar("T")
R = TypeVar("R")


class AnnotationError(ValueError):
    """Bad input in a dataset: says what was wrong, in which file and on which line (when known)."""

    def __init__(self, reason: str, file: str | PathLike | None = None, line: int | None = None):
        self.reason = reason
        self.file = None if file is None else str(file)
        self.line = line
        where = ", ".join(part for part in (self.file, None if line is None else f"line {line}") if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class ImageReadError(AnnotationError):
    """An image file that is missing, not an image, truncated, or in a format Pillow cannot decode here."""


class SkippedItem(NamedTuple):
    """One bad item a loader dropped with ``on_error="skip"``: where it was and why."""

    file: str | None
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = ", ".join(part for part in (self.file, None if self.line is None else f"line {self.line}") if part)
        return f"{where}: {self.reason}"


@dataclass(frozen=True, eq=False)
class DetectionRecord:
    """One annotated image; ``K`` boxes (``K = 0`` for a background image).

    Attributes:
        image_path: path of the image file.
        width, height: image size in pixels.
        boxes: ``(K, 4)`` float32 pixel corners ``(xmin, ymin, xmax, ymax)``.
        labels: ``(K,)`` int64 dataset class ids.
        class_names: ``K`` class names, one per box.
        superclasses: ``K`` entries of :data:`SUPERCLASSES` or ``None`` (unknown), one per box.
        country: where the images come from ("Germany", "Belgium", ...), ``None`` if unknown.
        split: "train", "test", ... or ``None``.
        difficult: optional ``(K,)`` bool (Pascal VOC ``difficult``, COCO ``iscrowd``); ``None`` when
            the source has no such flag.
    """

    image_path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    superclasses: tuple[str | None, ...]
    country: str | None = None
    split: str | None = None
    difficult: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{self.image_path}: boxes must have shape (K, 4), got {boxes.shape}")
        num_boxes = len(boxes)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        class_names = tuple(str(name) for name in self.class_names)
        superclasses = tuple(self.superclasses)
        lengths = {"labels": len(labels), "class_names": len(class_names), "superclasses": len(superclasses)}
        if self.difficult is not None:
            difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
            lengths["difficult"] = len(difficult)
            object.__setattr__(self, "difficult", difficult)
        wrong = {name: length for name, length in lengths.items() if length != num_boxes}
        if wrong:
            raise ValueError(f"{self.image_path}: {num_boxes} boxes but lengths {wrong}")
        unknown = [name for name in superclasses if name is not None and name not in SUPERCLASSES]
        if unknown:
            raise ValueError(f"{self.image_path}: superclasses {unknown} not in {SUPERCLASSES} (or None)")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"{self.image_path}: image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "image_path", str(self.image_path))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", class_names)
        object.__setattr__(self, "superclasses", superclasses)

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    @property
    def is_background(self) -> bool:
        """True for an image without any annotated object."""
        return len(self.boxes) == 0

    def normalized_boxes(self) -> np.ndarray:
        """``(K, 4)`` float32 corners divided by ``(width, height, width, height)``, in [0, 1]."""
        scale = np.array([self.width, self.height, self.width, self.height], dtype=np.float32)
        return self.boxes / scale

    def __repr__(self) -> str:
        return (
            f"DetectionRecord({self.image_path!r}, {self.width}x{self.height}, {self.num_boxes} boxes, "
            f"labels={self.labels.tolist()}, country={self.country!r}, split={self.split!r})"
        )


def record_from_table(
    image_path: str | PathLike, width: int, height: int, boxes: Sequence, labels: Sequence[int],
    classes: Mapping[int, str], superclass_of: Mapping[int, str | None], **fields,
) -> DetectionRecord:
    """A record whose ``class_names`` and ``superclasses`` come from a dataset's class tables."""
    labels = [int(label) for label in labels]
    return DetectionRecord(
        image_path=str(image_path), width=width, height=height, boxes=np.asarray(boxes, dtype=np.float32),
        labels=labels, class_names=[classes[label] for label in labels],
        superclasses=[superclass_of.get(label) for label in labels], **fields,
    )


class DetectionDataset(Sequence[DetectionRecord]):
    """A sequence of :class:`DetectionRecord` with the dataset's class table.

    Attributes:
        classes: dataset class id -> class name (every class of the dataset, seen in the records or not).
        superclass_of: dataset class id -> one of :data:`SUPERCLASSES` or ``None``.
        name: what the data is ("GTSDB", "BTSD training", a COCO file's description, ...).
        skipped: the bad items the loader dropped (``on_error="skip"``); empty when nothing was.
    """

    def __init__(
        self,
        records: Iterable[DetectionRecord],
        classes: Mapping[int, str],
        superclass_of: Mapping[int, str | None] | None = None,
        name: str = "dataset",
        skipped: Iterable[SkippedItem] = (),
    ):
        self._records = list(records)
        self.classes = {int(class_id): str(class_name) for class_id, class_name in classes.items()}
        superclass_of = {} if superclass_of is None else superclass_of
        self.superclass_of = {class_id: superclass_of.get(class_id) for class_id in self.classes}
        self.name = name
        self.skipped = list(skipped)
        for index, record in enumerate(self._records):
            unknown = set(record.labels.tolist()) - self.classes.keys()
            if unknown:
                raise ValueError(f"{self.name}: record {index} ({record.image_path}) has labels {sorted(unknown)} "
                                 f"missing from the class table")

    @overload
    def __getitem__(self, index: int) -> DetectionRecord: ...

    @overload
    def __getitem__(self, index: slice) -> DetectionDataset: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.with_records(self._records[index], name=self.name)
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[DetectionRecord]:
        return iter(self._records)

    def with_records(self, records: Iterable[DetectionRecord], name: str | None = None) -> DetectionDataset:
        """A dataset of other records (a subset, a filtered view) sharing this one's class table."""
        return DetectionDataset(records, self.classes, self.superclass_of, name or self.name, self.skipped)

    @property
    def num_boxes(self) -> int:
        return sum(record.num_boxes for record in self._records)

    def box_counts(self) -> dict[int, int]:
        """Class id -> number of boxes, for every class of the table (0 for classes without boxes)."""
        counts = Counter(label for record in self._records for label in record.labels.tolist())
        return {class_id: counts.get(class_id, 0) for class_id in self.classes}

    def superclass_counts(self) -> dict[str | None, int]:
        """Superclass (or ``None``) -> number of boxes."""
        return dict(Counter(name for record in self._records for name in record.superclasses))

    def summary(self) -> str:
        """Counts of images, background images, boxes, classes and superclasses, and what was skipped."""
        box_counts = self.box_counts()
        num_background = sum(record.is_background for record in self._records)
        classes_present = sum(count > 0 for count in box_counts.values())
        by_superclass = self.superclass_counts()
        superclass_text = ", ".join(
            f"{name or 'unknown'}: {by_superclass[name]}"
            for name in (*SUPERCLASSES, None) if name in by_superclass
        )
        lines = [
            f"{self.name}: {len(self)} images ({num_background} background), {self.num_boxes} boxes, "
            f"{classes_present} of {len(self.classes)} classes present",
        ]
        if superclass_text:
            lines.append(f"  boxes per superclass: {superclass_text}")
        lines.append(f"  skipped: {len(self.skipped)} bad items" if self.skipped else "  skipped: nothing")
        lines.extend(f"    {item}" for item in self.skipped[:5])
        if len(self.skipped) > 5:
            lines.append(f"    ... and {len(self.skipped) - 5} more (see .skipped)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<DetectionDataset {self.name!r}: {len(self)} images, {self.num_boxes} boxes, "
            f"{len(self.classes)} classes, {len(self.skipped)} skipped>"
        )


# --- what every loader does with bad input ----------------------------------------------------------

class IssueLog:
    """What a loader does with bad items: raise the first (``"raise"``) or collect them (``"skip"``)."""

    def __init__(self, on_error: OnError):
        if on_error not in ("raise", "skip"):
            raise ValueError(f'on_error must be "raise" or "skip", got {on_error!r}')
        self.on_error = on_error
        self.skipped: list[SkippedItem] = []

    def report(self, error: AnnotationError) -> None:
        """Raise ``error`` or record it as skipped."""
        if self.on_error == "raise":
            raise error
        self.skipped.append(SkippedItem(error.file, error.line, error.reason))

    def collect(self, make: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[make(item) for item in items]``, reporting the items whose ``make`` raises AnnotationError."""
        results = []
        for item in items:
            try:
                results.append(make(item))
            except AnnotationError as error:
                self.report(error)
        return results

    def warn_if_skipped(self, dataset_name: str, stacklevel: int = 3) -> None:
        """One warning for everything skipped, so that nothing is dropped silently."""
        if self.skipped:
            warnings.warn(
                f"{dataset_name}: skipped {len(self.skipped)} bad items, first: {self.skipped[0]} "
                f"(the dataset's .skipped lists them all)",
                stacklevel=stacklevel,
            )

    def dataset(
        self, records: list[DetectionRecord], classes: Mapping[int, str],
        superclass_of: Mapping[int, str | None] | None, name: str, source: str | PathLike,
        allow_empty: bool = False,
    ) -> DetectionDataset:
        """A loader's result: the dataset, after one warning for what was skipped.

        Raises:
            AnnotationError: naming ``source``, when there are no records and ``allow_empty`` is false.
        """
        if not records and not allow_empty:
            left = (f" left after skipping {len(self.skipped)} bad items (first: {self.skipped[0]})"
                    if self.skipped else "")
            raise AnnotationError(f"{name}: no images{left}. Check the path, or pass allow_empty=True "
                                  f"if an empty dataset is what you want", source)
        self.warn_if_skipped(name, stacklevel=4)  # point at the loader's caller
        return DetectionDataset(records, classes, superclass_of, name=name, skipped=self.skipped)


def group_lines_by_image(
    file: Path, parse_line: Callable[[str, Path, int], tuple], issues: IssueLog,
) -> tuple[dict[str, list[tuple]], set[str]]:
    """Read a one-box-per-line, ``;``-separated annotation file (GTSDB ``gt.txt``, BTSD ``GTclear``).

    ``parse_line(text, file, line)`` returns ``(image, *fields)`` or raises AnnotationError.

    Returns:
        ``image -> [(line, *fields), ...]`` in order of first appearance, and the images named by a bad
        line: a loader drops those whole, since keeping the image without the box would teach the
        detector that the sign is background. A line that repeats an earlier one (same image and
        fields) is reported and left out on its own: the image keeps the box once, not twice.
    """
    annotations: dict[str, list[tuple]] = defaultdict(list)
    bad_images: set[str] = set()
    first_line_of: dict[tuple[str, str], int] = {}
    text_lines = file.read_text(encoding="utf-8-sig", errors="replace").splitlines()  # -sig: drop a BOM
    for line, text in enumerate(text_lines, start=1):
        if not text.strip():
            continue
        try:
            image, *fields = parse_line(text.strip(), file, line)
        except AnnotationError as error:
            issues.report(error)
            bad_images.add(text.split(";")[0].strip())
            continue
        key = (image, repr(fields))
        if key in first_line_of:
            issues.report(AnnotationError(f"same image, box and class as line {first_line_of[key]}: a box "
                                          f"listed twice would count twice", file, line))
            continue
        first_line_of[key] = line
        annotations[image].append((line, *fields))
    return dict(annotations), bad_images


def check_box(
    box: Sequence[float], width: int, height: int, file: str | PathLike, line: int | None,
    what: str = "box", tolerance: float = BORDER_TOLERANCE,
) -> np.ndarray:
    """Validate pixel corners against the image size; return them clipped to the image.

    ``what`` names the box in the message where there is no line number ("annotation id 7").

    Raises:
        AnnotationError: non-finite coordinates, inverted corners (``xmax < xmin`` or ``ymax < ymin``,
            with the values), zero area, or a box sticking out of the ``width`` x ``height`` image by
            more than ``tolerance`` pixels.
    """
    corners = np.asarray(box, dtype=np.float64)
    described = f"{what} (xmin, ymin, xmax, ymax) = {[round(value, 3) for value in corners.tolist()]}"
    if not np.all(np.isfinite(corners)):
        raise AnnotationError(f"{described} has non-finite coordinates", file, line)
    xmin, ymin, xmax, ymax = corners
    inverted = [f"{axis}max {high:g} < {axis}min {low:g}"
                for axis, low, high in (("x", xmin, xmax), ("y", ymin, ymax)) if high < low]
    if inverted:
        raise AnnotationError(f"{described} has inverted corners: {', '.join(inverted)}", file, line)
    if xmax == xmin or ymax == ymin:
        raise AnnotationError(f"{described} has zero area", file, line)
    if xmin < -tolerance or ymin < -tolerance or xmax > width + tolerance or ymax > height + tolerance:
        raise AnnotationError(
            f"{described} lies outside the {width}x{height} image by more than {tolerance} px", file, line)
    clipped = np.clip(corners, 0.0, [width, height, width, height])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise AnnotationError(f"{described} lies entirely outside the {width}x{height} image", file, line)
    return clipped


# --- images ----------------------------------------------------------------------------------------

def _jpeg2000_hint(path: Path) -> str:
    if path.suffix.lower() in (".jp2", ".j2k", ".jpx") and not features.check("jpg_2000"):
        return (" This Pillow has no JPEG 2000 decoder (OpenJPEG): install Pillow's PyPI wheel, which "
                "includes it, or convert the .jp2 images to PNG.")
    return ""


def _open_image(path: Path) -> Image.Image:
    """Open an image lazily (header only); ImageReadError naming the file when that fails."""
    if not path.is_file():
        raise ImageReadError("image file not found", path)
    try:
        return Image.open(path)
    except UnidentifiedImageError as error:
        raise ImageReadError(f"not an image Pillow can identify ({error}).{_jpeg2000_hint(path)}", path) from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # plugins raise these for broken headers
        raise ImageReadError(f"unreadable or truncated image ({error}).{_jpeg2000_hint(path)}", path) from error


def _check_complete(image: Image.Image, path: Path) -> None:
    """Cheap truncation checks that need no decoding: binary PPM/PGM file size, PNG chunk checksums."""
    if image.format == "PPM" and image.mode in ("RGB", "L") and image.tile and image.tile[0][0] == "raw":
        # A binary P5/P6 file with maxval < 256 holds width * height * channels bytes after its header.
        expected = image.tile[0][2] + image.width * image.height * len(image.getbands())
        size = path.stat().st_size
        if size < expected:
            raise ImageReadError(f"truncated image: {size} bytes, the header needs {expected}", path)
    elif image.format == "PNG":
        try:
            image.verify()  # walks every chunk and checks its CRC, without inflating the pixels
        except (OSError, SyntaxError) as error:
            raise ImageReadError(f"truncated or corrupt PNG ({error})", path) from error


def read_image_size(path: str | PathLike) -> tuple[int, int]:
    """``(width, height)`` from an image's header, without decoding the pixels.

    Also catches truncated PPM and PNG files (cheap checks); truncation in other formats shows up when
    :func:`load_image` decodes the file.

    Raises:
        ImageReadError: missing file, not an image, truncated PPM/PNG.
    """
    path = Path(path)
    with _open_image(path) as image:
        size = image.size
        _check_complete(image, path)
    return size


def image_size_for(
    image_path: str | PathLike, file: str | PathLike, line: int | None, what: str = "image",
) -> tuple[int, int]:
    """:func:`read_image_size` for an image an annotation names: errors point at that annotation."""
    try:
        return read_image_size(image_path)
    except ImageReadError as error:
        if line is None and Path(file) == Path(image_path):
            raise
        raise AnnotationError(f"{what} {error.file}: {error.reason}", file, line) from None


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from any Pillow mode; 16-bit grey is scaled by 255 / 65535."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(grey * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")  # L, LA, RGBA (alpha dropped), P, CMYK, YCbCr, 1, F (clipped)
    return np.asarray(image, dtype=np.uint8)


def load_image(record_or_path: DetectionRecord | str | PathLike) -> np.ndarray:
    """Decode an image to ``(H, W, 3)`` uint8 RGB.

    Grayscale, RGBA (alpha dropped), palette and 16-bit images are converted. No EXIF rotation is
    applied: boxes refer to the pixels as stored.

    Raises:
        ImageReadError: (a ``ValueError``) naming the file, when it is missing, not an image, truncated,
            or JPEG 2000 without an OpenJPEG-enabled Pillow.
    """
    path = Path(record_or_path.image_path if isinstance(record_or_path, DetectionRecord) else record_or_path)
    with _open_image(path) as image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            reason = f"unreadable or truncated image ({error}).{_jpeg2000_hint(path)}"
            raise ImageReadError(reason, path) from error
        pixels = _to_rgb_array(image)
    record = record_or_path if isinstance(record_or_path, DetectionRecord) else None
    if record is not None and pixels.shape[:2] != (record.height, record.width):
        found = f"{pixels.shape[1]}x{pixels.shape[0]}"
        raise ImageReadError(f"image is {found} but its record says {record.width}x{record.height}", path)
    return pixels


__all__ = [
    "BORDER_TOLERANCE",
    "SUPERCLASSES",
    "AnnotationError",
    "DetectionDataset",
    "DetectionRecord",
    "ImageReadError",
    "SkippedItem",
    "load_image",
    "read_image_size",
]
