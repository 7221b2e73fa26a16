"""What the bench measures: one :class:`BenchConfig` per model configuration, and when bf16 is skipped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    """One measured model configuration and how long to measure it.

    Attributes:
        name: key in ``bench.json``.
        width, input_size, batch_size: SSD-VGG16's channel multiplier, input side, training batch.
        min_steps, min_seconds, max_steps: timed training steps: at least ``min_steps`` and
            ``min_seconds``, at most ``max_steps``, after ``warmup_steps`` untimed ones.
        pipeline_images, pipeline_epochs: sign-world scenes and epochs of the pipeline timing.
        peer: also time torchvision's SSD300 (it exists only at width 1.0 and 300 px).
        emulated_bf16: time ``mixed_bfloat16`` (and the peer's bf16 autocast) even where bf16 would be
            emulated (:func:`tlutils.profiles.bf16_is_native` is False): emulated bf16 is many times
            slower than float32, which the cheap cpu profile shows and SSD300 would take far too long to.
    """

    name: str
    width: float
    input_size: int
    batch_size: int
    warmup_steps: int = 2
    min_steps: int = 5
    min_seconds: float = 10.0
    max_steps: int = 50
    pipeline_images: int = 48
    pipeline_epochs: int = 2
    peer: bool = False
    emulated_bf16: bool = True

    def describe(self) -> str:
        return f"width {self.width:g} @ {self.input_size} px, batch {self.batch_size}"


def configurations(quick: bool = False) -> list[BenchConfig]:
    """The cpu profile's model and SSD300 (batch 4, so a CPU times it in minutes); tiny sizes with ``quick``."""
    from tlutils.profiles import PROFILES

    if quick:
        return [BenchConfig("cpu_profile", 0.125, 96, 4, warmup_steps=1, min_steps=1, min_seconds=0.0,
                            max_steps=1, pipeline_images=4, pipeline_epochs=1)]
    cpu = PROFILES["cpu"]
    return [
        BenchConfig("cpu_profile", cpu.width, cpu.input_size, cpu.batch_size),
        BenchConfig("ssd300", 1.0, 300, 4, warmup_steps=1, min_steps=3, min_seconds=0.0, max_steps=3,
                    pipeline_images=32, peer=True, emulated_bf16=False),
    ]


def bf16_skip_note(config: BenchConfig, native: bool) -> str | None:
    """Why ``config``'s bf16 runs (ours and the peer's) are not timed, or None when they are."""
    if native or config.emulated_bf16:
        return None
    return ("skipped: no bf16 units here, so bf16 is emulated (about 10x slower than float32, as the "
            "cpu profile's bf16 rows show); BenchConfig.emulated_bf16 times it anyway")
