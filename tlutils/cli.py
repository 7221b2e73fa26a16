"""The ``tlutils`` command line: ``tlutils data synth``, ``tlutils course``, ``tlutils bench``, ``tlutils sweep``,
``tlutils pretrain``, ``tlutils study``.

Each sub-command is a thin shell around a library function, imported only when the command runs, so
``tlutils --help`` is instant and imports no deep-learning backend.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _data_synth(args: argparse.Namespace) -> int:
    from tlutils.data.synth import generate

    path = generate(
        country=args.country,
        num_images=args.num_images,
        out_dir=args.out,
        seed=args.seed,
        image_size=args.image_size,
    )
    print(f"wrote {args.num_images} {args.country} images and annotations to {path}")
    return 0


def _course(args: argparse.Namespace) -> int:
    from tlutils.course import run_course

    return run_course(profile=args.profile, check=args.check, only=args.only, check_workers=args.check_workers,
                      estimate=not args.no_estimate, scope=args.scope)


def _plan(args: argparse.Namespace) -> int:
    from tlutils.plan import main

    return main(["--profile", args.profile, *(["--only", *args.only] if args.only else []),
                 *(["--no-estimate"] if args.no_estimate else []), *(["--flops"] if args.flops else []),
                 *(["--scope", args.scope] if args.scope else [])])


def _bench(args: argparse.Namespace) -> int:
    from tlutils.bench import run_bench

    return run_bench(out=args.out, quick=args.quick)


def _sweep(args: argparse.Namespace) -> int:
    from tlutils.experiment import expand_grid, sweep_from_cli
    from tlutils.experiment.sweeps import cli_grid
    from tlutils.plan import announce, sweep_plan

    announce(sweep_plan(expand_grid(*cli_grid(args)), args.out), estimate=not args.no_estimate)
    return sweep_from_cli(args)


def _pretrain(args: argparse.Namespace) -> int:
    from tlutils.pretrain import PretrainConfig, pretrained

    config = PretrainConfig(
        kind=args.kind, profile=args.profile, data=args.data, seed=args.seed, epochs=args.epochs,
        num_images=args.num_images, preprocessing=args.preprocessing, l2_regularization=args.l2_regularization,
    )
    print(pretrained(config, args.out))
    return 0


def _pretrain_source(args: argparse.Namespace) -> int:
    from tlutils.experiment import RunConfig, run
    from tlutils.experiment.shipped import export_shipped
    from tlutils.paths import runs_dir

    config = RunConfig(stage="source", source_data=args.source_data, strategy="scratch", profile=args.profile)
    results = args.results or runs_dir(args.profile)
    run(config, results, verbose=2, shipped=False)
    print(f"shipped: {export_shipped(config, results, args.shipped_dir)}")
    return 0


def _study_source_starts(args: argparse.Namespace) -> int:
    from tlutils.experiment.convergence import convergence_facts, convergence_table
    from tlutils.experiment.results import wide_pandas
    from tlutils.experiment.start_study import export_study, source_study, source_study_configs
    from tlutils.paths import runs_dir
    from tlutils.plan import announce, sweep_plan

    configs = source_study_configs(args.profile, args.starts)
    results = args.out or runs_dir(args.profile)
    announce(sweep_plan(configs, results), estimate=not args.no_estimate)
    print("(not in the plan: making a pretrained start the first time a classifier or detector start needs it, "
          "about as long as one source run)")
    rows, _ = source_study(args.profile, args.starts, results, run_here=True, verbose=2)
    with wide_pandas():
        print(convergence_table(convergence_facts(rows, args.threshold)).round(3).to_string())
    if args.export:
        print(f"exported: {export_study(configs, results, args.studies_dir)}")
    return 0


#: Help of ``--no-estimate``: the plan is printed either way.
NO_ESTIMATE_HELP = "print the plan without timing a few training steps here for an estimate"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tlutils`` command."""
    from tlutils.experiment.sweeps import SCOPES
    from tlutils.plan import SCOPE_HELP
    from tlutils.profiles import PROFILES

    parser = argparse.ArgumentParser(prog="tlutils", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate or inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = data_commands.add_parser("synth", help="write the embedded sign world for one country")
    synth.add_argument("--country", default="belgium")
    synth.add_argument("--num-images", type=int, default=100)
    synth.add_argument("--out", required=True, help="output directory (images + annotations.json)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=300)
    synth.set_defaults(handler=_data_synth)

    course = commands.add_parser("course", help="run every notebook with papermill")
    course.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    course.add_argument("--check", action="store_true", help="also validate the notebooks with nbval")
    course.add_argument("--check-workers", type=int, default=1,
                        help="processes for the nbval check (pytest-xdist), e.g. 2 on a 2-core machine")
    course.add_argument("--only", nargs="*", default=None, help="notebook numbers to run, e.g. 01 03")
    course.add_argument("--no-estimate", action="store_true", help=NO_ESTIMATE_HELP)
    course.add_argument("--scope", choices=SCOPES, default=None, help=SCOPE_HELP)
    course.set_defaults(handler=_course)

    plan = commands.add_parser("plan", help="print the course's runs, steps and images, and how long they take here")
    plan.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    plan.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 04 05")
    plan.add_argument("--no-estimate", action="store_true", help=NO_ESTIMATE_HELP)
    plan.add_argument("--flops", action="store_true", help="also estimate on a Colab T4 from counted FLOPs")
    plan.add_argument("--scope", choices=SCOPES, default=None, help=SCOPE_HELP)
    plan.set_defaults(handler=_plan)

    bench = commands.add_parser("bench", help="measure speed; writes runs/bench.json")
    bench.add_argument("--out", default="runs/bench.json")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    bench.set_defaults(handler=_bench)

    sweep = commands.add_parser("sweep", help="run a transfer (or source-start) sweep and append to a results CSV")
    sweep.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    sweep.add_argument("--target-data", nargs="*", default=None, metavar="SPEC",
                       help="target data specs: synth:<country> (or a bare country), gtsdb:<folder>, "
                            "btsd:<file>[,images=<folder>], coco:<file>[,images=<folder>], voc:<folder>, "
                            "yolo:<folder>[,classes=<file>] (default: the profile's countries)")
    sweep.add_argument("--countries", nargs="*", default=None, help="sign-world countries (same as --target-data)")
    sweep.add_argument("--source-data", default=None, metavar="SPEC",
                       help="what the source detector trains on (default synth:belgium)")
    sweep.add_argument("--classes", choices=["name", "superclass"], default=None,
                       help="match classes by name (default) or relabel both datasets to the four superclasses")
    sweep.add_argument("--strategies", nargs="*", default=None)
    sweep.add_argument("--num-target-images", nargs="*", type=int, default=None)
    sweep.add_argument("--seeds", nargs="*", type=int, default=None)
    sweep.add_argument("--stage", choices=["target", "source"], default="target",
                       help="source: compare source-detector starts (--strategies scratch classifier detector "
                            "imagenet) on --source-data; --num-target-images then sizes the source set")
    sweep.add_argument("--total-steps", type=int, default=None,
                       help="optimizer steps per run (default: the profile's budget for the stage)")
    sweep.add_argument("--steps-per-epoch", type=int, default=None,
                       help="steps between evaluations (default: the budget over the profile's target "
                            "epochs, or one pass over the source data)")
    sweep.add_argument("--learning-rates", nargs="*", type=float, default=None,
                       help="base learning rates to sweep (each strategy at each; choose per strategy on val "
                            "with tlutils.experiment.selection.select_learning_rates)")
    sweep.add_argument("--evaluate-test", action="store_true",
                       help="also score the test split at the start and the end (test_map50)")
    sweep.add_argument("--evaluate-source", action="store_true",
                       help="also score the source data again (source_map50: what the transfer forgot)")
    sweep.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                       help="stop a run after PATIENCE evaluations without a better val mAP (sign world only)")
    sweep.add_argument("--cache-features", action="store_true",
                       help="run the frozen part once per image and train the rest on stored features "
                            "(head_only, freeze:<point>; no augmentation)")
    sweep.add_argument("--smallest-scale", type=float, default=None,
                       help="the smallest default box as a fraction of the input side (default SSD's 0.1; "
                            "smaller for smaller objects)")
    sweep.add_argument("--l2-regularization", type=float, default=0.0,
                       help="L2 factor inside the loss (notebooks 05 and 06 use ssd_keras' 0.0005)")
    sweep.add_argument("--out", default=None, help="results directory (default runs/<profile>)")
    sweep.add_argument("--no-estimate", action="store_true", help=NO_ESTIMATE_HELP)
    sweep.set_defaults(handler=_sweep)

    pretrain = commands.add_parser("pretrain", help="make a pretrained start (kept in <out>/pretrained/)")
    kinds = pretrain.add_subparsers(dest="kind", required=True)
    for kind, what in (("classifier", "a VGG16 sign classifier on sign crops (default: the source country's)"),
                       ("detector", "a whole detector on other data (default: the sign world's other countries)")):
        command = kinds.add_parser(kind, help=what)
        command.add_argument("--profile", default="cpu", choices=["ci", "cpu", "gpu"])
        command.add_argument("--data", nargs="+", default=None, metavar="SPEC",
                             help="countries of the sign world (or synth:<country>) or coco:<annotations.json>"
                                  "[,images=<dir>]")
        command.add_argument("--out", default=None, help="results directory (default runs/<profile>)")
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--epochs", type=int, default=None, help="default: the profile's source epochs")
        command.add_argument("--num-images", type=int, default=None,
                             help="training images in all (default: the profile's source images)")
        command.add_argument("--preprocessing", default="tf", choices=["caffe", "tf", "none"],
                             help="must be the detector's (the source stage uses tf for these starts)")
        command.add_argument("--l2-regularization", type=float, default=0.0)
        command.set_defaults(handler=_pretrain)
    source = kinds.add_parser("source", help="train the profile's source detector (from scratch) and export "
                              "it as a shipped run (tlutils/shipped/<key>/), which run() installs instead of "
                              "training it")
    source.add_argument("--profile", default="cpu", choices=["ci", "cpu", "gpu"])
    source.add_argument("--source-data", default="synth:belgium", metavar="SPEC")
    source.add_argument("--results", default=None, help="results directory it trains in (default runs/<profile>)")
    source.add_argument("--shipped-dir", default=None, help="where to export (default tlutils/shipped)")
    source.set_defaults(handler=_pretrain_source)

    study = commands.add_parser("study", help="run one of the course's fixed studies")
    studies = study.add_subparsers(dest="study", required=True)
    starts = studies.add_parser("source-starts", help="the thesis' source starts on Belgium, long schedule, L2 "
                                "in the loss (notebook 06); prints how each converged")
    starts.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    starts.add_argument("--starts", nargs="+", default=["scratch", "classifier", "detector"],
                        help="source strategies (imagenet needs VGG16's ImageNet weights)")
    starts.add_argument("--threshold", type=float, default=0.7, help="report the steps to this val mAP@0.5")
    starts.add_argument("--out", default=None, help="results directory (default runs/<profile>)")
    starts.add_argument("--export", action="store_true",
                        help="write the rows as the study tlutils ships (tlutils/shipped/studies/)")
    starts.add_argument("--studies-dir", default=None, help="where --export writes (default tlutils/shipped/studies)")
    starts.add_argument("--no-estimate", action="store_true", help=NO_ESTIMATE_HELP)
    starts.set_defaults(handler=_study_source_starts)
    return parser


#: Exit code of a command the user got wrong (argparse uses it too).
USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tlutils`` console script.

    A ``ValueError`` (a mistake in what the user asked for) prints ``error: <message>`` and exits with
    :data:`USAGE_ERROR`; ``--debug`` shows its traceback instead. Other exceptions are bugs and keep
    their traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ValueError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
