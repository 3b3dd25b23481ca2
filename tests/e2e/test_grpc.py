"""gRPC through the real gateway, with grpcio on both sides (TLS through a CONNECT tunnel,
HTTP/2): a chart record or a note in a protobuf message abroad is refused with gRPC's own
PERMISSION_DENIED and nothing reaches the server; compressed messages too; the clean
counterparts (an operations record, the standard health check) are answered abroad; at home
the message arrives byte for byte as sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import unquote

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from tests.e2e.conftest import ca_bundle
from tests.support.gateway_process import GatewayProcess
from tests.support.grpcserver import GrpcRecordingServer
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP
from tests.support.notes import family
from tests.support.patients import make_patient
from tests.support.protobuf import ACK, PUT, clean_record, frame, patient_record
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
PATIENT = make_patient(2207)
NOTE = f"Patient: {PATIENT.given} {family(PATIENT)}, MRN {PATIENT.mrn}"


class GrpcUpstreams:
    def __init__(self, pki: Pki) -> None:
        self.domestic = GrpcRecordingServer(DOMESTIC_IP, pki.server_pem)
        self.foreign = GrpcRecordingServer(FOREIGN_IP, pki.server_pem)


@pytest.fixture(scope="module")
def grpc_upstreams(pki: Pki) -> Iterator[GrpcUpstreams]:
    servers = GrpcUpstreams(pki)
    yield servers
    servers.domestic.close()
    servers.foreign.close()


def _channel(gateway: GatewayProcess, server: GrpcRecordingServer) -> grpc.Channel:
    # The gateway's CA abroad (decrypted), the servers' own at home (relayed).
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_bundle(gateway))
    options = [("grpc.http_proxy", gateway.proxy_url), ("grpc.enable_retries", 0)]
    return grpc.secure_channel(server.target, credentials, options=options)


def _put(
    gateway: GatewayProcess,
    server: GrpcRecordingServer,
    message: bytes,
    compression: grpc.Compression = grpc.Compression.NoCompression,
) -> bytes:
    with _channel(gateway, server) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(PUT)
        answer: bytes = call(message, timeout=10, compression=compression)
        return answer


def _refusal(
    gateway: GatewayProcess, server: GrpcRecordingServer, message: bytes, **kw: grpc.Compression
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        _put(gateway, server, message, **kw)
    return refused.value


@pytest.mark.parametrize(
    "case",
    ["record", "note", "record-gzip"],
)
def test_a_patient_in_a_grpc_message_abroad_is_permission_denied(
    gateway: GatewayProcess, grpc_upstreams: GrpcUpstreams, case: str
) -> None:
    foreign = grpc_upstreams.foreign
    before = len(foreign.calls)
    message = patient_record(PATIENT) if case.startswith("record") else clean_record(notes=[NOTE])
    gzip = grpc.Compression.Gzip if case.endswith("gzip") else grpc.Compression.NoCompression
    error = _refusal(gateway, foreign, message, compression=gzip)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (error.code(), error.details())
    details = error.details() or ""
    assert "Blocked by PHI egress gateway" in details and "Incident" in details
    assert len(foreign.calls) == before  # nothing reached the server
    incident = details.rsplit("Incident ", 1)[1].strip()
    row = gateway.audit_row(incident)
    assert row["action"] == "block" and row["location"] == "foreign" and row["format"] == "grpc"
    assert all(w.startswith("grpc[0]") for w in json.loads(row["locations"]))
    recorded = json.dumps(row)
    assert PATIENT.mrn not in recorded and family(PATIENT) not in recorded


def test_a_clean_message_and_the_health_check_are_answered_abroad(
    gateway: GatewayProcess, grpc_upstreams: GrpcUpstreams
) -> None:
    foreign = grpc_upstreams.foreign
    message = clean_record(notes=["Interface queue drained at 14:30; no action needed."])
    answer = _put(gateway, foreign, message)
    assert ACK.FromString(answer).accepted  # type: ignore[attr-defined]
    assert foreign.calls[-1].message == message
    with _channel(gateway, foreign) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        status = check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_at_home_the_message_arrives_as_sent(
    gateway: GatewayProcess, grpc_upstreams: GrpcUpstreams
) -> None:
    domestic = grpc_upstreams.domestic
    message = patient_record(PATIENT, notes=[NOTE])
    answer = _put(gateway, domestic, message)
    assert ACK.FromString(answer).accepted  # type: ignore[attr-defined]
    assert domestic.calls[-1].message == message


def test_over_http1_the_grpc_status_is_in_the_headers(
    client: httpx.Client, gateway: GatewayProcess, grpc_upstreams: GrpcUpstreams
) -> None:
    """gRPC-Web and HTTP/1.1 clients: no trailers to carry the status, so the headers do."""
    url = f"https://{grpc_upstreams.foreign.target}{PUT}"
    for content_type in ("application/grpc", "application/grpc-web+proto"):
        answer = client.post(
            url, content=frame(patient_record(PATIENT)), headers={"content-type": content_type}
        )
        assert answer.status_code == 200 and answer.headers["grpc-status"] == "7"
        assert answer.headers["content-type"] == content_type
        incident = answer.headers["x-phi-gateway-incident"]
        assert incident in unquote(answer.headers["grpc-message"])
        assert gateway.audit_row(incident)["action"] == "block"
