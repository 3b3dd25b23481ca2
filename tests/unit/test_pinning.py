from gateway.geo.pinning import ConnectionPins, PinTable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pin_holds_while_a_flow_is_in_flight_even_past_the_ttl() -> None:
    clock = Clock()
    pins = PinTable(ttl=30, clock=clock)
    key = ("evil.example", 443)
    assert pins.acquire(key, "198.51.100.1") == "198.51.100.1"  # flow X, judged domestic
    clock.now = 100  # DNS has moved on to a foreign address...
    assert pins.acquire(key, "203.0.113.9") == "198.51.100.1"  # ...flow Y keeps X's pin
    assert pins.current(key) == "198.51.100.1"  # what X's connection will use


def test_idle_pin_expires_and_is_replaced() -> None:
    clock = Clock()
    pins = PinTable(ttl=30, clock=clock)
    key = ("h", 80)
    pins.acquire(key, "198.51.100.1")
    pins.release(key)
    clock.now = 10
    assert pins.acquire(key, "203.0.113.9") == "198.51.100.1"  # still fresh
    pins.release(key)
    clock.now = 50
    assert pins.current(key) is None
    assert pins.acquire(key, "203.0.113.9") == "203.0.113.9"


def test_no_address_no_pin() -> None:
    pins = PinTable()
    assert pins.acquire(("nowhere", 80), None) is None
    assert pins.current(("nowhere", 80)) is None
    pins.release(("nowhere", 80))  # harmless


def test_idle_pins_are_swept() -> None:
    clock = Clock()
    pins = PinTable(ttl=1, clock=clock)
    for n in range(1000):
        pins.acquire((f"h{n}", 80), "198.51.100.1")
        pins.release((f"h{n}", 80))
    clock.now = 10
    pins.acquire(("last", 80), "198.51.100.2")
    assert len(pins) == 1


# -- ConnectionPins: flows, then upstream connections ---------------------------------------------
HOST = ("app.example", 443)


def test_a_flow_is_judged_against_the_pin_and_the_live_peers_too() -> None:
    pins = ConnectionPins(clock=Clock())
    assert pins.acquire(HOST, ("198.51.100.1", "198.51.100.2")) == (
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.1",  # the pin: the first address resolved
    )
    assert pins.pinned(HOST) == "198.51.100.1"
    pins.connected("c1", HOST, "198.51.100.7")  # an open connection mitmproxy may reuse
    # DNS moved while the first flow is in flight: the pin and the live peer are judged too.
    assert pins.acquire(HOST, ("203.0.113.9",)) == ("203.0.113.9", "198.51.100.1", "198.51.100.7")


def test_nothing_resolved_and_nothing_pinned_judges_nothing() -> None:
    pins = ConnectionPins()
    assert pins.acquire(HOST, ()) == ()
    assert pins.pinned(HOST) is None


def test_release_lets_the_pin_expire_after_the_ttl() -> None:
    clock = Clock()
    pins = ConnectionPins(ttl=30, clock=clock)
    pins.acquire(HOST, ("198.51.100.1",))
    clock.now = 100
    assert pins.pinned(HOST) == "198.51.100.1"  # in flight: binding past the ttl
    pins.release(HOST)
    clock.now = 131
    assert pins.pinned(HOST) is None


def test_ttl_can_be_changed_on_a_running_table() -> None:
    clock = Clock()
    pins = ConnectionPins(ttl=30, clock=clock)
    pins.acquire(HOST, ("198.51.100.1",))
    pins.release(HOST)
    pins.ttl = 5
    assert pins.ttl == 5
    clock.now = 6
    assert pins.pinned(HOST) is None


def test_a_redirected_connection_carries_its_name_again_once_open() -> None:
    pins = ConnectionPins()
    assert pins.redirect("c1", HOST, "198.51.100.1") == ("198.51.100.1", 443)
    assert pins.connected("c1", ("198.51.100.1", 443), "198.51.100.1") == HOST
    assert pins.live(HOST) == ("198.51.100.1",)
    assert pins.live(("198.51.100.1", 443)) == ()
    pins.disconnected("c1", HOST, "198.51.100.1")
    assert pins.live(HOST) == ()


def test_an_address_that_is_already_the_pin_is_not_redirected() -> None:
    pins = ConnectionPins()
    literal = ("198.51.100.1", 443)
    assert pins.redirect("c1", literal, "198.51.100.1") == literal
    assert pins.connected("c1", literal, "198.51.100.1") == literal
    assert pins.live(literal) == ("198.51.100.1",)


def test_a_connection_that_never_opened_is_forgotten() -> None:
    pins = ConnectionPins()
    pins.redirect("c1", HOST, "198.51.100.1")
    pins.failed("c1")
    # Had the name been remembered, the next connection with this id would carry it.
    assert pins.connected("c1", ("198.51.100.1", 443), None) == ("198.51.100.1", 443)
    pins.redirect("c2", HOST, "198.51.100.1")
    pins.disconnected("c2", None, None)  # closed before it opened: forgotten as well
    assert pins.connected("c2", ("198.51.100.1", 443), None) == ("198.51.100.1", 443)


def test_live_peers_are_counted_per_connection() -> None:
    pins = ConnectionPins()
    pins.connected("c1", HOST, "198.51.100.1")
    pins.connected("c2", HOST, "198.51.100.1")
    pins.connected("c3", HOST, "198.51.100.2")
    pins.disconnected("c1", HOST, "198.51.100.1")
    assert pins.live(HOST) == ("198.51.100.1", "198.51.100.2")  # c2 is still open
    pins.disconnected("c2", HOST, "198.51.100.1")
    pins.disconnected("c2", HOST, "198.51.100.1")  # a repeat does not go below zero
    assert pins.live(HOST) == ("198.51.100.2",)
    pins.disconnected("c3", HOST, "198.51.100.2")
    pins.disconnected("c4", ("other", 80), "198.51.100.2")  # never counted: harmless
    assert pins.live(HOST) == ()
    assert pins.acquire(HOST, ()) == ()  # nothing live is judged any more


def test_a_connection_without_a_peer_is_not_live() -> None:
    pins = ConnectionPins()
    assert pins.connected("c1", HOST, None) == HOST
    assert pins.connected("c2", None, "198.51.100.1") is None
    assert pins.live(HOST) == ()
