"""The one dispatcher of nogil work items onto the process's worker pool (:func:`firstspike.hal.threads.run_items`)."""

from __future__ import annotations

import threading

import pytest

from firstspike.hal.threads import run_items


@pytest.mark.parametrize(("n_items", "threads"), [(0, 2), (1, 3), (5, 1), (7, 2), (16, 4)])
def test_every_item_runs_once(n_items: int, threads: int) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        with lock:
            seen.append(k)

    run_items(work, n_items, threads)
    assert sorted(seen) == list(range(n_items))


def test_an_error_in_any_item_is_raised_after_every_thread_stopped() -> None:
    running = threading.Event()
    done: list[int] = []

    def work(k: int) -> None:
        if k == 1:
            running.wait(5)  # the other thread is inside item 0 by now
            raise RuntimeError("item 1 failed")
        running.set()
        threading.Event().wait(0.05)
        done.append(k)

    with pytest.raises(RuntimeError, match="item 1 failed"):
        run_items(work, 2, 2)
    assert done == [0]  # raised only after the other item had ended
