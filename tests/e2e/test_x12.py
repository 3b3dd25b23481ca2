"""X12 through the real gateway (issue 16, first step): an 837P claim bound abroad is blocked,
the same claim at home arrives byte for byte, and an acknowledgement (999) passes abroad."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Upstreams
from tests.support.gateway_process import GatewayProcess
from tests.unit.test_x12_envelope import ACK, claim_837p

pytestmark = pytest.mark.e2e


def test_a_claim_abroad_is_blocked_at_home_it_passes_and_an_ack_goes(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess
) -> None:
    claim = claim_837p().encode()
    blocked = client.post(
        f"{upstreams.foreign.url}/claims", content=claim, headers={"content-type": "text/plain"}
    )
    assert blocked.status_code == 451
    assert "/claims" not in upstreams.foreign.paths()
    incident = blocked.headers["x-phi-gateway-incident"]
    row = gateway.audit_row(incident)
    assert row["format"] == "x12" and row["message_type"] == "837"
    assert "2010BA REF-02" in row["locations"] and "DOE" not in str(row)
    home = client.post(f"{upstreams.domestic.url}/claims", content=claim)
    assert home.status_code == 200 and upstreams.domestic.received[-1].body == claim
    ack = client.post(f"{upstreams.foreign.url}/ack", content=ACK.encode())
    assert ack.status_code == 200 and upstreams.foreign.received[-1].body == ACK.encode()
