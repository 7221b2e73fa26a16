"""An interactive explorer of transfer strategies (notebook 07), built from ipywidgets.

``TransferExplorer(profile="cpu")`` shows two tabs; it works in JupyterLab, Jupyter Notebook and Colab
(standard widgets only; figures are sent as PNG images, so no matplotlib widget backend is needed):

- **Train**: a freeze-depth slider over ``tlutils.model.FREEZE_POINTS`` ("none" fine-tunes everything,
  at ``tlutils.transfer.FINETUNE_LR_FACTOR`` times the rate), a learning-rate slider on a log scale and
  the number of target images. **Train** runs a short target run through the experiment runner
  (``tlutils.experiment.run``, a few evaluation epochs of the profile's length, starting from the
  profile's source detector) and redraws the loss and mAP curves after every epoch, then the
  detections of the trained detector. A setting trained before is read back from the results table
  at once.
- **Browse**: the study of notebook 05 from ``runs/<profile>/results.csv``: mAP against the number of
  target images per strategy, and the comparison table, for a chosen country and metric. Nothing
  trains; only runs comparable with the study (same budget, base learning rate, L2 penalty,
  preprocessing, optimizer and schedule) are shown.

The widget callbacks only call :meth:`TransferExplorer.train` and :meth:`TransferExplorer.browse`,
so tests (and scripts) set widget values from Python and call ``train_button.click()``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable

import ipywidgets as widgets

from tlutils.experiment import RunConfig, load_results, resolve, run, source_config, summarize
from tlutils.experiment.config import SOURCE_DATA
from tlutils.experiment.datasets import is_synth, label, load_split
from tlutils.plotting.core import label_of
from tlutils.profiles import get_profile
from tlutils.transfer import training_plan

#: The freeze slider's positions: "none" fine-tunes everything; "heads" is left out (nothing would train).
FREEZE_OPTIONS: tuple[str, ...] = ("none", "block1", "block2", "block3", "block4", "block5", "fc", "extras")
#: Metrics the browse tab offers (columns of the results table).
BROWSE_METRICS: tuple[str, ...] = ("val_map50", "coco_map", "val_loss", "loss")
#: Knobs that must equal the study's for a run to be browsed with it (``summarize`` groups by none of them
#: but the learning rate, and the study uses the profile's).
STUDY_KNOBS: tuple[str, ...] = ("total_steps", "learning_rate", "l2_regularization", "preprocessing", "optimizer",
                                "schedule")
#: Dots per inch of the figures sent to the browser.
WIDGET_DPI = 80
#: Learning-rate slider range, as powers of ten.
LEARNING_RATE_EXPONENTS = (-5.0, -1.0)


def strategy_for(freeze_point: str) -> str:
    """The strategy of a freeze slider position: ``"finetune"`` for "none", else ``"freeze:<point>"``."""
    if freeze_point not in FREEZE_OPTIONS:
        raise ValueError(f"freeze point must be one of {FREEZE_OPTIONS}, got {freeze_point!r}")
    return "finetune" if freeze_point == "none" else f"freeze:{freeze_point}"


def figure_png(figure: Any, dpi: int = WIDGET_DPI) -> bytes:
    """The PNG bytes of a matplotlib figure, which is then closed (figures made in callbacks must not pile up)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def study_results(results: Any, base: RunConfig) -> Any:
    """The target rows of ``results`` comparable with the study ``base``: equal :data:`STUDY_KNOBS`."""
    import numpy as np

    resolved = resolve(base)
    keep = results["stage"] == "target"
    for knob in STUDY_KNOBS:
        value = getattr(resolved, knob)
        if isinstance(value, float):  # read back from CSV: compare as numbers
            keep &= np.isclose(results[knob].astype(float), value, rtol=1e-9, atol=0.0)
        else:
            keep &= results[knob] == value
    return results[keep]


def _live_callback(on_epoch: Callable[[int, dict], None]) -> Any:
    """A ``keras.callbacks.Callback`` calling ``on_epoch(epoch, logs)`` after every epoch.

    It runs after the experiment runner's own callback, so ``logs`` already hold ``val_map50``.
    """
    import keras

    class LiveCallback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            on_epoch(epoch, dict(logs or {}))

    return LiveCallback()


class TransferExplorer:
    """Train short transfer runs from sliders, or browse the transfer study (see the module docstring).

    Args:
        profile: run profile name (``tlutils.profiles``): model size, data and the source detector.
        country: the target country; default the profile's nearest.
        source_data, target_data: data specs (``tlutils.data.specs``) of the source detector's data and
            of the target, instead of the sign world's Belgium and ``country``; real frames are shown
            with their detections found tile by tile (``tlutils.plotting.show_tiled_detections``).
        l2_regularization: the L2 penalty of the runs (notebook 05's study uses 0.0005).
        train_epochs: evaluation epochs of a Train run (each ``target_steps / target_epochs`` steps of the
            profile): a short run. Browse shows the study's full-budget runs only.
        results_dir: where ``results.csv`` and the runs live; default ``runs/<profile>/`` (the source
            detector of the course is found and reused there).
        data_dir: where the sign world is rendered; default the project's ``data/``.
        shown_images: validation images drawn with the trained detector's detections.
        score_threshold: detections drawn from this score on.

    Attributes:
        freeze_point, learning_rate, num_images, train_button: the Train tab's controls.
        browse_country, browse_metric: the Browse tab's controls.
        progress: a progress bar over the epochs being trained: the source detector's first when the
            course has not trained it yet (minutes on a CPU), then the Train run's.
        progress_log: what the progress bar counted, one ``(stage, epoch, of)`` per finished epoch.
        status: one line of HTML saying what happens; ``curves``, ``detections``, ``browse_plot``:
            ``ipywidgets.Image`` s holding the figures (PNG); ``browse_table``: an HTML table.
        history: the epochs of the current Train run so far (dicts of the logged values).
        last_results: the rows of the last Train run (``pandas.DataFrame``), ``None`` before.
        widget: the whole explorer (an ``ipywidgets.Tab``); the explorer displays as it.
    """

    def __init__(self, profile: str = "cpu", country: str | None = None, l2_regularization: float = 0.0,
                 train_epochs: int = 2, results_dir: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, shown_images: int = 3, score_threshold: float = 0.3,
                 source_data: str = SOURCE_DATA, target_data: str | None = None):
        from tlutils.paths import runs_dir

        self.profile = get_profile(profile)
        if train_epochs < 1:
            raise ValueError(f"train_epochs must be >= 1, got {train_epochs}")
        self.steps_per_epoch = max(1, self.profile.target_steps // self.profile.target_epochs)
        self.train_steps = train_epochs * self.steps_per_epoch
        target = target_data or country or self.profile.countries[0]
        self.base = RunConfig(profile=self.profile.name, target_data=target, source_data=source_data,
                              num_target_images=min(self.profile.target_sizes), l2_regularization=l2_regularization)
        self.country = label(self.base.target_data)  # the results table's name of the target
        self.results_dir = Path(results_dir) if results_dir is not None else runs_dir(self.profile.name)
        self.data_dir = data_dir
        self.shown_images = shown_images
        self.score_threshold = score_threshold
        self.history: list[dict] = []
        self.last_results = None
        self._build_train_tab()
        self._build_browse_tab()
        self.widget = widgets.Tab(children=[self._train_tab, self._browse_tab])
        self.widget.set_title(0, "Train")
        self.widget.set_title(1, "Browse the study")

    # -- layout -----------------------------------------------------------------------------------

    def _build_train_tab(self) -> None:
        style = {"description_width": "150px"}
        layout = widgets.Layout(width="520px")
        self.freeze_point = widgets.SelectionSlider(options=FREEZE_OPTIONS, value="block3",
                                                    description="freeze up to", continuous_update=False,
                                                    style=style, layout=layout)
        low, high = LEARNING_RATE_EXPONENTS
        self.learning_rate = widgets.FloatLogSlider(value=self.profile.learning_rate, base=10, min=low, max=high,
                                                    step=0.25, description="base learning rate", readout_format=".0e",
                                                    continuous_update=False, style=style, layout=layout)
        pool = max(self.profile.target_sizes)
        if not is_synth(self.base.target_data):  # real data: at most its train split
            pool = min(pool, resolve(self.base.replace(num_target_images=1)).pool_size)
        self.num_images = widgets.IntSlider(value=min(min(self.profile.target_sizes), pool), min=1, max=pool,
                                            description="target images", continuous_update=False, style=style,
                                            layout=layout)
        self.train_button = widgets.Button(description="Train", button_style="primary", icon="play")
        self.status = widgets.HTML()
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="", bar_style="info",
                                            layout=widgets.Layout(width="520px", visibility="hidden"))
        self.progress_log: list[tuple[str, int, int]] = []
        self.curves = widgets.Image(format="png")
        self.detections = widgets.Image(format="png")
        self.train_button.on_click(lambda _: self.train())
        for control in (self.freeze_point, self.learning_rate, self.num_images):
            control.observe(lambda _: self._describe(), names="value")
        self._describe()
        self._train_tab = widgets.VBox([self.freeze_point, self.learning_rate, self.num_images,
                                        widgets.HBox([self.train_button, self.status]), self.progress, self.curves,
                                        self.detections])

    def _build_browse_tab(self) -> None:
        specs = dict.fromkeys([*(f"synth:{country}" for country in self.profile.countries), self.base.target_data])
        self.browse_country = widgets.Dropdown(options=[(label(spec), spec) for spec in specs],
                                               value=self.base.target_data, description="country")
        self.browse_metric = widgets.Dropdown(options=[(label_of(metric), metric) for metric in BROWSE_METRICS],
                                              value="val_map50", description="metric")
        self.browse_plot = widgets.Image(format="png")
        self.browse_table = widgets.HTML()
        for control in (self.browse_country, self.browse_metric):
            control.observe(lambda _: self.browse(), names="value")
        self._browse_tab = widgets.VBox([widgets.HBox([self.browse_country, self.browse_metric]),
                                         self.browse_plot, self.browse_table])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- Train ------------------------------------------------------------------------------------

    def config(self) -> RunConfig:
        """The run the Train tab's controls describe (seed 0, a short budget)."""
        return self.base.replace(strategy=strategy_for(self.freeze_point.value),
                                 num_target_images=int(self.num_images.value),
                                 learning_rate=float(self.learning_rate.value), total_steps=self.train_steps,
                                 steps_per_epoch=self.steps_per_epoch)

    def _describe(self) -> None:
        config = self.config()
        phases = training_plan(config.strategy, self.train_steps, config.learning_rate, self.steps_per_epoch)
        rates = ", ".join(f"{phase.learning_rate:.0e}" for phase in phases)
        self.status.value = (f"{config.strategy} on {config.num_target_images} {self.country} images, "
                             f"{self.train_steps} steps at learning rate {rates}")

    def train(self) -> Any:
        """Run (or read back) the Train tab's run, redrawing the curves live; returns its rows."""
        config = self.config()
        self.history = []
        self.train_button.disabled = True
        try:
            self._train_source(config)
            self.status.value = f"training {config.strategy} ... (the first epoch includes building the model)"
            self._start_progress("target", resolve(config).total_steps // self.steps_per_epoch)
            rows = run(config, self.results_dir, data_dir=self.data_dir, verbose=0, tensorboard=False,
                       callbacks=[_live_callback(self._on_epoch)])
        finally:
            self.train_button.disabled = False
            self.progress.layout.visibility = "hidden"
        self.last_results = rows
        self._draw_curves(rows)
        self._draw_detections(rows)
        final = rows.iloc[-1]
        trained = "trained" if self.history else "read from results.csv (trained before)"
        self.status.value = (f"{config.strategy}: {trained}; val mAP@0.5 {final['val_map50']:.3f}, "
                             f"val loss {final['val_loss']:.2f} after {int(final['step'])} steps")
        return rows

    def _train_source(self, config: RunConfig) -> None:
        """Run (or read back) the source detector a source-initialized run starts from, with the
        progress bar: left to ``run``, it would train unseen for minutes before the first target epoch."""
        if not config.uses_source:
            return
        source = source_config(config)
        resolved = resolve(source)
        epochs = resolved.total_steps // resolved.steps_per_epoch
        self._start_progress("source", epochs)
        self.status.value = (f"training the source detector first ({epochs} epochs, notebook 04's run; "
                             "once trained, it is read back)")

        def on_source_epoch(epoch: int, logs: dict) -> None:
            self._advance("source", epoch, f"source detector: epoch {epoch + 1} of {epochs}, "
                                           f"val mAP@0.5 {logs.get('val_map50', float('nan')):.3f}")

        run(source, self.results_dir, data_dir=self.data_dir, verbose=0, tensorboard=False,
            callbacks=[_live_callback(on_source_epoch)])

    def _start_progress(self, stage: str, epochs: int) -> None:
        self.progress.max, self.progress.value = max(1, epochs), 0
        self.progress.description = stage
        self.progress.layout.visibility = "visible"

    def _advance(self, stage: str, epoch: int, status: str) -> None:
        self.progress.value = epoch + 1
        self.progress_log.append((stage, epoch + 1, self.progress.max))
        self.status.value = status

    def _on_epoch(self, epoch: int, logs: dict) -> None:
        import pandas as pd

        self._advance("target", epoch, "")
        self.history.append({"epoch": epoch + 1, **logs})
        self._draw_curves(pd.DataFrame(self.history))
        self.status.value = (f"epoch {epoch + 1} of {self.train_steps // self.steps_per_epoch}: "
                             f"loss {logs.get('loss', float('nan')):.2f}, "
                             f"val mAP@0.5 {logs.get('val_map50', float('nan')):.3f}")

    def _draw_curves(self, rows: Any) -> None:
        from tlutils.plotting import plot_history

        metrics = [name for name in ("loss", "regularization", "val_loss", "val_map50") if name in rows]
        self.curves.value = figure_png(plot_history(rows, metrics=metrics, hue=None))

    def _draw_detections(self, rows: Any) -> None:
        from tlutils.plotting import show_detections, show_tiled_detections
        from tlutils.transfer import load_detector

        detector = load_detector(self.results_dir / str(rows["checkpoint"].iloc[-1]))
        options = dict(score_threshold=self.score_threshold, max_images=self.shown_images,
                       smallest_scale=self.base.smallest_scale)
        spec = self.base.target_data
        val_set = load_split(spec, "val", self.base.classes, self.profile.num_val_images, self.profile.input_size,
                             self.data_dir)
        show = show_detections if is_synth(spec) else show_tiled_detections  # real: whole frames, as scored
        self.detections.value = figure_png(show(detector, val_set, **options))

    # -- Browse -----------------------------------------------------------------------------------

    def browse(self) -> Any:
        """Show the study's results for the chosen country and metric; returns the summary shown."""
        from tlutils.plotting import plot_map_vs_images

        metric = self.browse_metric.value
        results = study_results(load_results(self.results_dir), self.base.replace(total_steps=None))
        from_source = results["source_data"].isna() | (results["source_data"] == self.base.source_data)
        results = results[(results["data"] == self.browse_country.value) & from_source]
        if results.empty:
            self.browse_plot.value = b""
            self.browse_table.value = (f"<p>No study runs for {label(self.browse_country.value)} in "
                                       f"{self.results_dir / 'results.csv'} yet: run notebook 05 first.</p>")
            return None
        summary = summarize(results, metric=metric)
        self.browse_plot.value = figure_png(plot_map_vs_images(summary, metric=metric))
        table = summary.pivot_table(index="strategy", columns="num_target_images", values=f"{metric}_mean")
        table = table.rename_axis(index=label_of("strategy"), columns=label_of("num_target_images"))
        self.browse_table.value = f"<p>{label_of(f'{metric}_mean')}</p>" + table.round(3).to_html()
        return summary


__all__ = ["BROWSE_METRICS", "FREEZE_OPTIONS", "STUDY_KNOBS", "TransferExplorer", "figure_png", "strategy_for",
           "study_results"]
