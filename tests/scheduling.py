"""An xdist plugin (pyproject.toml's addopts: `-p tests.scheduling`): under `--dist loadfile`
(`make test`), the longest test files start first.

xdist hands whole files to its workers, most tests first, so a long file with few tests
(test_fork_journey.py has one) starts last and runs alone while the other worker idles. Here
the files LONGEST_FIRST names go first, longest first (each to the next free worker); every
other file follows in xdist's own order. Without xdist, or with another --dist, this does
nothing.
"""

from __future__ import annotations

from pathlib import PurePath

import pytest

# By their time in `make test` (2 workers on a mostly idle 2-core machine; seconds in the
# comments, rounded); a file missing here only starts later, so update the list when
# `--durations` shows a new one.
LONGEST_FIRST = (
    "test_pipeline_e2e.py",  # 430
    "test_dataset_matrix.py",  # 270
    "test_fork_journey.py",  # 190
    "test_training_schedule.py",  # 180
    "test_browser.py",  # 100
    "test_frozen_base.py",  # 60
    "test_train_export.py",  # 55
    "test_distributed.py",  # 50
    "test_models.py",  # 45
    "test_bench_scripts.py",  # 30
    "test_webapp_server.py",  # 30
)


def rank(scope: str) -> int:
    """A file's place: LONGEST_FIRST's order, then every other file (xdist's order kept)."""
    name = PurePath(scope).name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # optional: a run without xdist has no hook
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # xdist's own scheduler
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def _assign_work_unit(self, node) -> None:
            # xdist gives a free worker the first file of its queue: move the best-ranked
            # there (min keeps the queue's order among equals).
            self.workqueue.move_to_end(min(self.workqueue, key=rank), last=False)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)
