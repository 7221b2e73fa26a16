"""Measure how fast the embedded sign world renders and writes scenes.

Usage: ``python scripts/bench_synth.py [--num-images 200] [--image-size 300] [--country belgium]``.

Prints images per second for rendering alone and for ``generate`` (rendering + PNG + JSON), both as
wall-clock and as CPU time of this process (on a shared machine the CPU figure is the single-core
speed; the wall figure also counts time the scheduler gave to other processes).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from tlutils.data.synth import COUNTRIES, generate, image_rng, render_scene


def _rate(num_images: int, wall: float, cpu: float) -> str:
    return f"{num_images / wall:7.1f} images/s wall, {num_images / cpu:7.1f} images/s CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=300)
    parser.add_argument("--country", default=None, help="one country (default: each in turn)")
    args = parser.parse_args()
    for country in [args.country] if args.country else list(COUNTRIES):
        render_scene(country, image_rng(1, country, 0), args.image_size)  # warm the drawing caches
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(args.num_images):
            render_scene(country, image_rng(1, country, index), args.image_size)
        render = _rate(args.num_images, time.perf_counter() - wall, time.process_time() - cpu)
        with tempfile.TemporaryDirectory() as out_dir:
            wall, cpu = time.perf_counter(), time.process_time()
            generate(country, args.num_images, out_dir, seed=1, image_size=args.image_size)
            written = _rate(args.num_images, time.perf_counter() - wall, time.process_time() - cpu)
        print(f"{country:8s} {args.image_size} px  render: {render}  |  generate: {written}")


if __name__ == "__main__":
    main()
