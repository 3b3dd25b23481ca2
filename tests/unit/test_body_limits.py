"""The body budget (addons/body_limits.py): per body, declared or arriving, and all together."""

from __future__ import annotations

import gc

from mitmproxy import http
from mitmproxy.test import tflow

from addons.body_limits import LIMIT, BodyBudget


def _flow(declared: int | None = None) -> http.HTTPFlow:
    flow = tflow.tflow()
    if declared is not None:
        flow.request.headers["content-length"] = str(declared)
    else:
        flow.request.headers.pop("content-length", None)
    return flow


def test_a_body_passes_its_limit_by_declared_length_or_arriving_bytes() -> None:
    budget = BodyBudget()
    declared, chunked = _flow(declared=5000), _flow()
    budget.watch(declared, 4096, 1 << 20)
    budget.watch(chunked, 4096, 1 << 20)
    assert budget.over(declared, 10) == "max_body_bytes"
    assert budget.over(chunked, 4000) == ""
    assert budget.over(chunked, 4097) == "max_body_bytes"
    assert budget.over(_flow(), 1 << 30) == ""  # not watched


def test_all_bodies_together_stay_under_the_budget_and_give_it_back() -> None:
    budget = BodyBudget()
    first, second = _flow(), _flow()
    budget.watch(first, 1000, 1500)
    budget.watch(second, 1000, 1500)
    assert budget.over(first, 900) == ""
    assert budget.over(second, 700) == "max_buffered_body_bytes"
    budget.release(first)
    assert budget.over(second, 800) == ""
    assert budget.held == 800
    third = _flow()
    budget.watch(third, 1000, 1500)
    budget.over(third, 600)
    assert budget.held == 1400
    del third
    gc.collect()  # a flow that ended without a hook gives its bytes back too
    assert budget.held == 800
    assert LIMIT in first.metadata
