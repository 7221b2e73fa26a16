"""Notebook 01 runs under papermill with its real-data parameters (ci profile; about half a minute).

``GTSDB_DATA`` names a GTSDB folder of the user's and ``BTSD_DATA`` is left at None on a machine
without ``../shared/data`` (``$TLUTILS_ROOT`` moves the project into a temporary folder): the GTSDB part
reads the user's folder and the BTSD part falls back to the stand-in, without error.
"""

from __future__ import annotations

import pytest

from tlutils.course import KERNEL_ARGUMENTS, KERNEL_ENV
from tlutils.data.export import benchmark_format_example

from conftest import REPO_ROOT


@pytest.mark.slow
def test_notebook_01_reads_a_gtsdb_folder_given_as_a_parameter_without_any_btsd(tmp_path, monkeypatch):
    import nbformat
    import papermill

    mine = benchmark_format_example("germany", 3, 128, data_dir=tmp_path / "mine").gtsdb  # the user's GTSDB
    project = tmp_path / "project"  # no ../shared beside it: BTSD_DATA = None takes the stand-in
    monkeypatch.setenv("TLUTILS_ROOT", str(project))
    for name, value in KERNEL_ENV.items():
        monkeypatch.setenv(name, value)
    output = tmp_path / "01_data.ipynb"
    papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "01_data.ipynb"), str(output),
                               parameters={"PROFILE": "ci", "GTSDB_DATA": mine}, cwd=str(tmp_path),
                               progress_bar=False, kernel_name="python3", extra_arguments=KERNEL_ARGUMENTS)
    printed = "".join(output_["text"] for cell in nbformat.read(output, as_version=4).cells
                      if cell.cell_type == "code" for output_ in cell.outputs if output_.get("name") == "stdout")
    stand_in = project.resolve() / "data" / "real-format-example" / "germany_6x400_benchmarks"
    assert f"GTSDB: {mine}\nBTSD:  btsd:{stand_in / 'BTSD_training_GTclear.txt'}\n" in printed
    assert "\nGTSDB: 3 images (0 background)" in printed  # the summary of the user's 3 frames
    assert (project / "runs" / "ci" / "figures" / "01_box_statistics.png").is_file()
