"""The kopf registrations: the watch handler must run on the event loop (contract section 7)."""

import asyncio

from controller.operator import build_registry


def test_the_watch_handler_is_a_coroutine_so_kopf_runs_it_on_the_loop() -> None:
    # A sync handler runs in kopf's thread pool, where Runtime.observe's asyncio.create_task
    # raises RuntimeError and the JobStore and the scheduler's Event are used off the loop.
    handlers = build_registry()._watching.get_all_handlers()
    assert [h.id.rsplit(".", 1)[-1] for h in handlers] == ["observe"]
    assert asyncio.iscoroutinefunction(handlers[0].fn)
