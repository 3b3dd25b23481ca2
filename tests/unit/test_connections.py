"""The bookkeeping of bounded connections (gateway/connections.py), with the clock in hand."""

from __future__ import annotations

import pytest

from gateway.config import Connections, parse_config
from gateway.connections import (
    Caps,
    Connection,
    ConnectionTable,
    DescriptorBudget,
    Phase,
    Refusal,
    Stage,
    Timeouts,
    per_client_cap,
    tick_seconds,
    total_cap,
)

T = Timeouts(header=10, idle=30, body=20, min_body_rate=100, upstream=60)


def phase(connection: Connection, now: float) -> Phase | None:
    late = connection.overdue(now, T)
    return late.phase if late is not None else None


def test_defaults_are_named_and_bounded() -> None:
    config = parse_config({}).connections
    assert config == Connections()
    assert (config.header_seconds, config.idle_seconds, config.body_seconds) == (20, 60, 30)
    assert (config.upstream_seconds, config.max_per_client, config.max_total) == (120, 256, None)
    assert Timeouts.of(config).min_body_rate == 1024


def test_a_new_silent_connection_is_idle_after_the_header_time() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    assert phase(c, 10) is None
    assert phase(c, 10.1) is Phase.IDLE


def test_a_new_connection_trickling_headers_is_cut_from_its_opening() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    for t in range(1, 10):  # a byte a second keeps nothing alive
        c.read(1, t)
    assert phase(c, 10.1) is Phase.HEADERS


def test_kept_alive_connection_idles_then_has_header_time_from_its_first_byte() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.read(100, 1)
    c.headers("f", 1)
    c.body("f", 1)
    c.judging("f")
    c.forwarded("f", 1)
    c.answered("f")
    c.finished("f", 5)
    assert phase(c, 34.9) is None  # idle_seconds after the response
    assert phase(c, 35.1) is Phase.IDLE
    c.read(1, 30)  # the next request begins: headers now have header_seconds
    assert phase(c, 39.9) is None
    assert phase(c, 40.1) is Phase.HEADERS


def test_output_still_queued_is_not_idleness() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.headers("f", 0)
    c.finished("f", 1)
    c.writing(25)  # a slow client still reading a large answer
    assert phase(c, 40) is None
    assert phase(c, 55.1) is Phase.IDLE


def test_body_has_its_time_plus_credit_for_every_byte() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.read(200, 0)
    c.headers("f", 0)
    c.body("f", 2)  # the gateway's headers hook took two seconds: not the client's time
    assert c.stage("f") is Stage.BODY
    assert phase(c, 21.9) is None
    assert phase(c, 22.1) is Phase.BODY
    c.read(1000, 22)  # ten seconds of credit at 100 B/s
    assert phase(c, 31.9) is None
    assert phase(c, 32.1) is Phase.BODY


def test_a_trickled_body_is_cut_and_a_moving_one_never() -> None:
    trickle, moving = Connection("t", "a", now=0), Connection("m", "b", now=0)
    for c in (trickle, moving):
        c.headers("f", 0)
        c.body("f", 0)
    for t in range(1, 600):
        trickle.read(1, t)
        moving.read(150, t)  # above the 100 B/s floor
        assert phase(moving, t) is None
    assert phase(trickle, 599) is Phase.BODY


def test_hooks_stop_the_clock() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.headers("f", 0)
    assert phase(c, 1000) is None  # the gateway is still locating
    c.body("f", 1000)
    c.judging("f")
    assert phase(c, 5000) is None  # inspecting
    c.forwarded("f", 5000)
    assert phase(c, 5060.1) is Phase.UPSTREAM


def test_upstream_deadline_names_the_request_and_ends_with_the_answer() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.headers("a", 0)
    c.body("a", 0)
    c.judging("a")
    c.forwarded("a", 0)
    late = c.overdue(60.1, T)
    assert late is not None and late.flow == "a" and late.phase is Phase.UPSTREAM
    c.answered("a")
    assert c.overdue(1000, T) is None  # a long download is not the upstream's stall


def test_a_gateway_answer_never_waits_for_upstream() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.headers("a", 0)
    c.body("a", 0)
    c.judging("a")
    c.answered("a")  # refused by policy
    c.forwarded("a", 0)  # only from the gateway's hook, not after an answer
    assert c.stage("a") is Stage.RESPONSE
    assert c.overdue(1000, T) is None


def test_an_early_answer_to_a_streamed_upload_is_kept() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.headers("a", 0)
    c.body("a", 0)
    c.answered("a")  # the upstream answered before the body ended
    c.judging("a")
    c.forwarded("a", 10)
    assert c.stage("a") is Stage.RESPONSE


def test_http2_requests_have_their_own_deadlines() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    for flow in ("a", "b"):
        c.headers(flow, 0)
        c.body(flow, 0)
        c.judging(flow)
    c.forwarded("a", 0)
    c.answered("b")
    late = c.overdue(60.1, T)
    assert late is not None and late.flow == "a"
    c.finished("b", 61)
    assert c.overdue(61, T) is not None  # a still waits
    c.answered("a")
    c.finished("a", 62)
    assert phase(c, 91.9) is None and phase(c, 92.1) is Phase.IDLE


def test_a_tunnel_waits_like_a_kept_alive_connection() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.read(50, 0)  # CONNECT host:443
    c.tunnel(1)
    assert phase(c, 30.9) is None
    assert phase(c, 31.1) is Phase.IDLE


def test_streams_have_no_http_deadlines() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.streaming()
    assert c.overdue(10**6, T) is None


def test_mllp_sender_waiting_for_a_silent_receiver_is_cut() -> None:
    c = Connection("c", "10.0.0.1", now=0, stream=True)
    c.mllp = True
    c.sent(5)
    assert phase(c, 65) is None
    c.replied()
    assert phase(c, 100) is None
    c.sent(100)
    c.sent(150)  # the sender keeps sending (no ACK expected): its clock moves on
    assert phase(c, 209) is None
    assert phase(c, 210.1) is Phase.UPSTREAM


def test_raw_tcp_is_not_held_to_a_reply() -> None:
    c = Connection("c", "10.0.0.1", now=0, stream=True)
    c.sent(0)
    assert c.overdue(10**6, T) is None


def test_closing_connections_are_not_acted_on_twice() -> None:
    c = Connection("c", "10.0.0.1", now=0)
    c.closing = True
    assert c.overdue(10**6, T) is None


def test_table_caps_per_client_then_globally() -> None:
    table = ConnectionTable()
    caps = Caps(per_client=2, total=3)
    assert isinstance(table.admit("1", "10.0.0.1", 0, caps), Connection)
    assert isinstance(table.admit("2", "10.0.0.1", 0, caps), Connection)
    assert table.admit("3", "10.0.0.1", 0, caps) is Refusal.PER_CLIENT
    assert isinstance(table.admit("4", "10.0.0.2", 0, caps), Connection)
    assert table.admit("5", "10.0.0.3", 0, caps) is Refusal.GLOBAL
    assert len(table) == 3
    table.release("1")
    assert isinstance(table.admit("6", "10.0.0.1", 0, caps), Connection)
    assert table.release("never admitted") is None
    assert table.admit("7", "10.0.0.9", 0, Caps(5, None), descriptors_short=True) is (
        Refusal.DESCRIPTORS
    )


def test_table_lists_what_is_overdue() -> None:
    table = ConnectionTable()
    caps = Caps(10, None)
    quiet = table.admit("q", "a", 0, caps)
    busy = table.admit("b", "a", 0, caps)
    assert isinstance(quiet, Connection) and isinstance(busy, Connection)
    busy.headers("f", 0)
    assert [o.connection.key for o in table.overdue(11, T)] == ["q"]


def test_global_cap_is_derived_from_the_descriptor_limit() -> None:
    budget = DescriptorBudget(limit=1024, at_start=20, reserved=64)
    assert budget.connection_cap() == (1024 - 20 - 64) // 2
    assert total_cap(None, budget) == 470
    assert total_cap(100, budget) == 100
    assert total_cap(10_000, budget) == 470  # never past what the descriptors allow
    unlimited = DescriptorBudget(limit=None, at_start=20, reserved=64)
    assert total_cap(None, unlimited) is None
    assert total_cap(50, unlimited) == 50
    assert DescriptorBudget(limit=80, at_start=40, reserved=64).connection_cap() == 1


@pytest.mark.parametrize(("in_use", "short"), [(None, False), (900, False), (992, True)])
def test_descriptors_short_when_the_reserve_is_half_gone(in_use: int | None, short: bool) -> None:
    assert DescriptorBudget(1024, 20, 64).short(in_use) is short


def test_ticks_follow_the_shortest_timeout() -> None:
    assert tick_seconds(T) == 1.0
    assert tick_seconds(Timeouts(0.4, 30, 20, 1, 60)) == pytest.approx(0.1)
    assert tick_seconds(Timeouts(0.01, 0.01, 0.01, 1, 0.01)) == 0.05


def test_one_client_never_gets_more_than_half_of_all_connections() -> None:
    assert per_client_cap(256, None) == 256
    assert per_client_cap(256, 1000) == 256
    assert per_client_cap(256, 88) == 44  # RLIMIT_NOFILE 256: the derived global cap is low
    assert per_client_cap(256, 1) == 1
