"""Running one measurement in a fresh Python process: ``python -m tlutils.bench --child JOB SPEC``.

The child prints one line ``BENCH_RESULT <json>``; the parent reads it back. A fresh process keeps a
configuration's peak memory its own and lets no Keras dtype policy leak into the next one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tlutils.bench.training import measure_training

#: Jobs a child can run: name -> function of the JSON spec returning a JSON-able dict.
CHILD_JOBS = {"training": measure_training}
RESULT_PREFIX = "BENCH_RESULT "


def run_child(job: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``job`` of :data:`CHILD_JOBS` in a fresh Python process and return its result dict.

    Raises:
        RuntimeError: the process failed or printed no result (its last output lines are included).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    command = [sys.executable, "-m", "tlutils.bench", "--child", job, json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
    raise RuntimeError(f"bench job {job!r} failed (exit {done.returncode}):\n{tail}")


def child_main(job: str, spec_json: str) -> int:
    """The child's side: run ``job`` on the decoded spec and print its result line; returns 0."""
    if job not in CHILD_JOBS:
        raise ValueError(f"unknown bench job {job!r}; choose one of {sorted(CHILD_JOBS)}")
    print(RESULT_PREFIX + json.dumps(CHILD_JOBS[job](json.loads(spec_json))), flush=True)
    return 0
