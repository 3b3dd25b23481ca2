"""A loopback gRPC server (grpcio, TLS) that records the raw request messages it receives and
serves the standard health service: what a vendor's gRPC endpoint abroad looks like."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.support.protobuf import ACK, SERVICE

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----\n?", re.S)


@dataclass
class Call:
    method: str
    message: bytes
    metadata: dict[str, str]


@dataclass
class GrpcRecordingServer:
    host: str
    certificate: Path  # PEM: certificate and key
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        blocks = {
            m.group(1): m.group(0) for m in _PEM_BLOCK.finditer(self.certificate.read_bytes())
        }
        key = next(v for k, v in blocks.items() if b"PRIVATE KEY" in k)
        credentials = grpc.ssl_server_credentials([(key, blocks[b"CERTIFICATE"])])
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
            name: grpc.unary_unary_rpc_method_handler(self._recorder(name))
            for name in ("Put", "Query")
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        checker = health.HealthServicer()
        checker.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checker, self.server)
        self.port = self.server.add_secure_port(f"{self.host}:0", credentials)
        self.server.start()

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def methods(self) -> list[str]:
        with self._lock:
            return [c.method for c in self.calls]

    def _recorder(self, name: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = {k: str(v) for k, v in context.invocation_metadata()}
            with self._lock:
                self.calls.append(Call(name, request, metadata))
            return ACK(accepted=True).SerializeToString()

        return handle

    def close(self) -> None:
        self.server.stop(grace=None)
