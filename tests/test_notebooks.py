"""The committed notebooks as a reader gets them (no kernel needed): executed, small, and free
of machine paths and stderr noise. nbval (in `make test`) re-runs them and compares the cells
marked NBVAL_CHECK_OUTPUT; this file checks what a re-run cannot see."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))
# Directories that only exist on some machine: temporary, home and build directories (POSIX
# and Windows). Built from names, so this file holds no path itself.
_MACHINE_DIRS = ["tmp", "work", "root", r"home/\w+"]
MACHINE_PATH = re.compile("|".join(f"/{d}/" for d in _MACHINE_DIRS) + r"|[A-Z]:\\\\Users")
MAX_BYTES = 2_000_000


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request: pytest.FixtureRequest) -> tuple[Path, dict]:
    path = request.param
    return path, json.loads(path.read_text())


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 5


def test_committed_executed_and_small(notebook: tuple[Path, dict]) -> None:
    path, nb = notebook
    assert path.stat().st_size < MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code and all(c.get("execution_count") for c in code), "not executed in full"
    counts = [c["execution_count"] for c in code]
    assert counts == sorted(counts), "cells were executed out of order"


def test_no_machine_paths_and_no_stderr(notebook: tuple[Path, dict]) -> None:
    path, nb = notebook
    for i, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            assert output.get("name") != "stderr", f"{path.name} cell {i} printed to stderr"
            assert output.get("output_type") != "error", f"{path.name} cell {i} failed"
            text = json.dumps({k: v for k, v in output.items() if k != "data"}) + json.dumps(
                {k: v for k, v in output.get("data", {}).items() if k.startswith("text")})
            assert not MACHINE_PATH.search(text), f"{path.name} cell {i}: a machine path"


def test_every_notebook_ends_with_a_summary_and_exercises(notebook: tuple[Path, dict]) -> None:
    path, nb = notebook
    markdown = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert re.search(r"#+ .*Summary", markdown), f"{path.name}: no Summary section"
    assert re.search(r"#+ .*Exercises", markdown), f"{path.name}: no Exercises section"


def test_no_progress_bar_widget_is_committed(notebook: tuple[Path, dict]) -> None:
    """A saved progress-bar widget shows a stale '0% ... remaining' forever (sliders that a
    reader moves are welcome)."""
    path, nb = notebook
    state = json.dumps(nb.get("metadata", {}).get("widgets", {}))
    assert "ProgressModel" not in state, f"{path.name} saved a progress bar"


def test_no_execution_timestamps_are_committed(notebook: tuple[Path, dict]) -> None:
    """Per-cell run times change on every execution and would make each re-run a diff of every
    cell (`make notebooks` executes with record_timing off)."""
    path, nb = notebook
    timed = [i for i, c in enumerate(nb["cells"]) if c.get("metadata", {}).get("execution")]
    assert not timed, f"{path.name}: cells {timed} carry execution timestamps"
