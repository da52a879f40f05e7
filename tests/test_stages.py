"""Stage records: what a stage's output depends on, its status and what it cost over attempts."""

from ekd import stages
from ekd.stages import Stage


def test_a_killed_attempt_keeps_its_cost_up_to_its_last_record(tmp_path, monkeypatch):
    clock = iter([0.0, 10.0, 25.0, 100.0, 130.0])
    monkeypatch.setattr(stages.time, "perf_counter", lambda: next(clock))
    stage = Stage(tmp_path / "stage", "a" * 64)
    stage.start()  # t = 0
    stage.record_time()  # t = 10: 10 s
    stage.record_time()  # t = 25: 25 s, then killed
    assert stage.record() == {"hash": "a" * 64, "status": "running", "seconds": 25.0}
    again = Stage(tmp_path / "stage", "a" * 64)
    again.start()  # t = 100: resumed
    again.finish()  # t = 130: 25 + 30 s
    assert again.record() == {"hash": "a" * 64, "status": "done", "seconds": 55.0} and again.done
    other = Stage(tmp_path / "stage", "b" * 64)
    assert not other.done
