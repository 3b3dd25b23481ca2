"""The PROXY protocol v2 reader, the HAProxy configuration of run --workers, and the merge of
the workers' metrics (the processes themselves: tests/e2e/test_workers.py)."""

from __future__ import annotations

import hashlib
import inspect
import ipaddress
import shutil
import struct
from pathlib import Path

import pytest
from mitmproxy.proxy import mode_servers

from gateway import haproxy
from gateway.errors import StartError
from gateway.exposition import merge
from gateway.proxy_protocol import (
    SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    body_length,
    encode,
    is_trusted,
    parse,
)

# mitmproxy 12.3.1's handle_stream, which addons/proxy_protocol.py follows for a balancer's
# connections: when mitmproxy changes it, review the copy and update the hash.
HANDLE_STREAM_SHA256 = "21eea06f208c752e68bb82b2003211f126c84c45c31cdfc9632c049c20845381"


def _parse(header: bytes) -> ProxyHeader:
    return parse(header[:16], header[16:])


def test_an_ipv4_and_an_ipv6_header_name_the_client() -> None:
    four = _parse(encode(("10.1.2.3", 40000), ("192.0.2.1", 8080)))
    assert four.source == ("10.1.2.3", 40000) and four.destination == ("192.0.2.1", 8080)
    six = _parse(encode(("2001:db8::7", 1), ("2001:db8::1", 2575)))
    assert six.source == ("2001:db8::7", 1) and not six.local


def test_a_local_header_keeps_the_connection_addresses() -> None:
    header = SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    assert _parse(header).local and _parse(header).source is None


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 10.1.2.3 192.0.2.1 40000 8080\r\n",  # version 1: not accepted
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        SIGNATURE + bytes([0x11, 0x11]) + struct.pack("!H", 12),  # version 1 in a v2 shape
        SIGNATURE + bytes([0x2F, 0x11]) + struct.pack("!H", 12),  # unknown command
        SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 60000),  # far too long
    ],
)
def test_what_is_not_a_v2_header_is_refused(header: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        body_length(header[:16])


def test_a_short_or_datagram_header_is_refused() -> None:
    header = encode(("10.1.2.3", 1), ("10.1.2.4", 2))
    with pytest.raises(ProxyProtocolError):
        parse(header[:16], header[16:-1])
    udp = header[:13] + bytes([0x12]) + header[14:]
    with pytest.raises(ProxyProtocolError):
        _parse(udp)


def test_only_balancers_are_trusted() -> None:
    networks = (ipaddress.ip_network("10.20.0.0/24"),)
    assert is_trusted("10.20.0.3", networks) and is_trusted("::ffff:10.20.0.3", networks)
    assert not is_trusted("10.20.1.3", networks) and not is_trusted("nonsense", networks)


def test_mitmproxy_handle_stream_is_the_one_followed() -> None:
    handle_stream = mode_servers.ServerInstance.handle_stream
    handle_stream = getattr(handle_stream, "original", handle_stream)  # wrapped in this process
    source = inspect.getsource(handle_stream)
    assert hashlib.sha256(source.encode()).hexdigest() == HANDLE_STREAM_SHA256


def test_the_haproxy_configuration_is_accepted(tmp_path: Path) -> None:
    workers = (haproxy.Worker("w1", 20001, 20101), haproxy.Worker("w2", 20002, 20102))
    text = haproxy.render([haproxy.Frontend("mode0", "127.0.0.1", 18080, workers)], tmp_path, 30)
    assert text.count("send-proxy-v2") == 2 and "balance leastconn" in text
    assert "check port 20101" in text and "GET /readyz" in text
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed (scripts/install-test-tools.sh installs it)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    haproxy.check(path)
    path.write_text(text.replace("balance leastconn", "balance nonsense"))
    with pytest.raises(StartError, match="HAProxy refuses"):
        haproxy.check(path)


def test_metrics_are_merged_by_family_with_a_worker_label() -> None:
    one = '# HELP x_total X.\n# TYPE x_total counter\nx_total{a="1"} 2.0\n# TYPE y gauge\ny 1.0\n'
    own = "# HELP x_total X.\n# TYPE x_total counter\n# TYPE z gauge\nz 3.0\n"
    lines = merge([("", own), ("w1", one), ("w2", one)]).splitlines()
    assert lines.count("# TYPE x_total counter") == 1
    at = lines.index("# TYPE x_total counter")
    assert lines[at + 1 : at + 3] == [
        'x_total{worker="w1",a="1"} 2.0',
        'x_total{worker="w2",a="1"} 2.0',
    ]
    assert 'y{worker="w2"} 1.0' in lines and "z 3.0" in lines
