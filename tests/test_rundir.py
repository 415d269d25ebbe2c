"""rundir.py: the run directory's files, the metrics log (and its TensorBoard copy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a3c_course.config import ConfigError
from a3c_course.rundir import (
    MetricsLog,
    RunDirError,
    prepare_run_dir,
    read_metrics,
    require_tensorboard,
    tensorboard_available,
    write_json,
)


def test_prepare_refuses_to_clobber_and_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_run_dir(run, resume=False, overwrite=False)
    (run / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(RunDirError, match="already holds a run"):
        prepare_run_dir(run, resume=False, overwrite=False)
    assert (run / "metrics.jsonl").exists()  # nothing lost
    with pytest.raises(RunDirError, match="holds no checkpoint.pt"):
        prepare_run_dir(run, resume=True, overwrite=False)
    with pytest.raises(RunDirError, match="exclude each other"):
        prepare_run_dir(run, resume=True, overwrite=True)
    prepare_run_dir(run, resume=False, overwrite=True)
    assert not (run / "metrics.jsonl").exists()


def test_metrics_log_sets_rows_after_the_checkpoint_aside(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, keep_rows=None)
    for i in range(5):
        log.write({"event": "progress", "time_s": float(i), "steps": i})
    log.close()
    # Resumed from a checkpoint that covered 3 rows: rows 4 and 5 were lost training.
    log = MetricsLog(path, keep_rows=3)
    assert log.rows == 3
    log.write({"event": "resume", "time_s": 2.5, "steps": 2})
    log.close()
    assert [r["steps"] for r in read_metrics(tmp_path)] == [0, 1, 2, 2]
    discarded = [json.loads(x) for x in (tmp_path / "metrics.discarded.jsonl").read_text()
                 .splitlines()]
    assert [r["steps"] for r in discarded] == [3, 4]


def test_write_json_is_atomic_and_readable(tmp_path: Path) -> None:
    path = write_json(tmp_path / "deep" / "x.json", {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert not (tmp_path / "deep" / "x.json.tmp").exists()


def test_tensorboard_gets_the_same_rows(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path / "metrics.jsonl", keep_rows=None, tensorboard=True)
    log.write({"event": "progress", "time_s": 10.0, "steps": 400, "steps_per_s": 40.0,
               "entropy": 1.75, "policy_loss": None})
    log.write({"event": "eval", "time_s": 11.0, "steps": 420, "eval_return": -21.0,
               "eval_length": 764})
    log.close()
    board = EventAccumulator(str(tmp_path / "tensorboard"))
    board.Reload()
    tags = set(board.Tags()["scalars"])
    assert {"progress/steps_per_s", "progress/entropy", "eval/eval_return"} <= tags
    assert "progress/policy_loss" not in tags  # None: no update yet, nothing drawn
    (point,) = board.Scalars("progress/entropy")
    assert point.step == 400 and point.value == pytest.approx(1.75)


def test_missing_tensorboard_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert tensorboard_available() is False
    with pytest.raises(ConfigError, match=r"a3c-course\[tensorboard\]"):
        require_tensorboard()
