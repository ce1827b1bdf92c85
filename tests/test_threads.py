"""The automatic thread count (tzip/threads.py), on injected readings: no test here depends
on how busy the machine running it is.

The policy: cores less the busy ones, where the 1-minute load average counts only as far
as tasks runnable now corroborate it (issue 31: the load average still counted the
previous job, so a second tzip in a row on an idle 2-core machine ran on one thread)."""
from __future__ import annotations

import os

import pytest

from tzip import threads


@pytest.mark.parametrize("cores, load1, others, want", [
    (2, 1.9, 0, 2),     # just after the previous job: its load lingers, nothing runs now
    (2, 0.1, 0, 2),     # idle
    (2, 2.0, 2, 1),     # two other CPU-bound processes: never more threads than cores free
    (2, 12.3, 12, 1),   # a machine far past busy: still one thread
    (4, 3.1, 1, 3),     # the load says 3 busy, only 1 runs now
    (4, 1.8, 5, 2),     # a moment's spike of runnable tasks: the load average caps it
    (4, 0.74, 3, 4),    # a load under .75 counts for no core
    (4, 0.75, 3, 3),
    (2, 1.9, None, 1),  # no runnable count (not Linux): the load average alone, as before
    (3, None, None, 3),  # no load average either: every core
])
def test_policy_on_readings(cores, load1, others, want):
    assert threads.pick_threads(cores, load1, others) == want


@pytest.mark.parametrize("text, own, want", [
    ("1.90 1.20 0.80 1/180 9999\n", 1, 0),   # only the reader runs
    ("2.00 2.00 2.00 3/180 9999\n", 1, 2),
    ("2.00 2.00 2.00 3/180 9999\n", 2, 1),   # one of ours is running too: not another's
    ("2.00 2.00 2.00 1/180 9999\n", 3, 0),   # sampled at different moments: never negative
    ("2.00 2.00 2.00 3/180 9999\n", 0, 2),   # the reader is always one of ours
    ("garbage", 1, None),
    ("1.0 1.0 1.0 x/180 1", 1, None),
])
def test_runnable_others_parses_proc_loadavg(text, own, want):
    assert threads.runnable_others(text, own) == want


def _fake_tasks(tmp_path, states: list[str]):
    d = tmp_path / "task"
    for i, state in enumerate(states):
        (d / str(100 + i)).mkdir(parents=True)
        (d / str(100 + i) / "stat").write_text(f"{100 + i} (py (worker) R) {state} 1 2 3 4\n")
    return d


@pytest.mark.parametrize("states, want", [(["R", "S", "S"], 1), (["R", "R", "D"], 2), ([], 1)])
def test_own_running_threads(tmp_path, monkeypatch, states, want):
    """A thread's state follows the last ')' of its stat line (a name may hold parens)."""
    monkeypatch.setattr(threads, "OWN_TASKS", str(_fake_tasks(tmp_path, states)))
    assert threads._own_running() == want


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="no /proc")
def test_own_running_threads_of_this_process():
    assert 1 <= threads._own_running() <= len(os.listdir("/proc/self/task"))


@pytest.fixture()
def readings(tmp_path, monkeypatch):
    """auto_threads' inputs, set by the test: cores, the load average, /proc/loadavg."""
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(threads, "LOADAVG", str(loadavg))
    monkeypatch.setattr(threads, "OWN_TASKS", str(_fake_tasks(tmp_path, ["R"])))

    def set_(cores: int, load1: float, proc: str | None) -> None:
        monkeypatch.setattr(threads, "available_cores", lambda: cores)
        monkeypatch.setattr(os, "getloadavg", lambda: (load1, load1, load1))
        if proc is None:
            loadavg.unlink(missing_ok=True)
        else:
            loadavg.write_text(proc)
    return set_


def test_second_run_in_a_row_gets_every_core(readings):
    """The previous tzip (or an install) left the load at 1.9; nothing else runs now."""
    readings(2, 1.9, "1.90 1.20 0.80 1/180 9999\n")
    assert threads.auto_threads() == 2


def test_busy_machine_still_gets_fewer_threads(readings):
    readings(2, 2.1, "2.10 2.05 2.00 3/180 9999\n")  # two others and the reader
    assert threads.auto_threads() == 1
    readings(4, 2.1, "2.10 2.05 2.00 3/180 9999\n")
    assert threads.auto_threads() == 2


def test_without_proc_loadavg_the_load_average_decides(readings):
    readings(2, 1.9, None)
    assert threads.auto_threads() == 1


def test_a_moments_runnable_task_does_not_take_a_core(readings, monkeypatch):
    """After a previous job (load 2.6) a kernel thread runnable at one reading of three:
    every core; a second process runnable at every reading: one fewer."""
    readings(2, 2.6, "2.60 2.70 2.70 2/150 9999\n")
    monkeypatch.setattr(threads, "SAMPLE_GAP", 0)
    seen = iter([1, 0, 1])
    monkeypatch.setattr(threads, "runnable_others", lambda: next(seen))
    assert threads.auto_threads() == 2
    calls = []
    monkeypatch.setattr(threads, "runnable_others", lambda: calls.append(1) or 1)
    assert threads.auto_threads() == 1
    assert len(calls) == threads.SAMPLES


def test_an_idle_reading_is_read_once(readings, monkeypatch):
    readings(2, 2.6, "2.60 2.70 2.70 1/150 9999\n")
    calls = []
    monkeypatch.setattr(threads, "runnable_others", lambda: calls.append(1) or 0)
    assert threads.auto_threads() == 2 and len(calls) == 1
