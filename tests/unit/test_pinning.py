from gateway.geo.pinning import PinTable


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
