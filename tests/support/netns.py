"""Throwaway Linux network namespaces for the transparent-mode test.

Everything lives inside namespaces this module creates: veth pairs are created directly in
them (never in the host's namespace), addresses come from 10.231.0.0/16, iptables rules are
namespace-local, and deleting the namespaces removes all of it. The test process itself never
changes namespace: ``Netns.call`` runs a function in a fresh thread that enters the namespace
(``setns`` is per thread for network namespaces), so every socket created there, and by any
thread started from there (an asyncio receiver's loop, an HTTP server), belongs to it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

PREFIX = "phigw"  # namespace names: phigw-<pid>-<role>
_NETNS_DIR = Path("/run/netns")


class NetnsUnavailable(Exception):
    """This machine cannot build the test network; the message says why."""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def check(*argv: str) -> None:
    result = _run(*argv)
    if result.returncode != 0:
        raise NetnsUnavailable(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")


def unavailable_reason() -> str | None:
    """Why namespaces cannot be built here (None when they can)."""
    if not hasattr(os, "setns"):
        return "os.setns is not available (Linux only)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    if shutil.which("iptables") is None:
        return "iptables is missing (scripts/ensure-netns-tools.sh installs it as root)"
    return None


def remove_stale() -> None:
    """Delete namespaces left by earlier runs that were killed before their cleanup."""
    if not _NETNS_DIR.is_dir():
        return
    for path in _NETNS_DIR.glob(f"{PREFIX}-*-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _run("ip", "netns", "delete", path.name)


class Netns:
    def __init__(self, role: str) -> None:
        self.name = f"{PREFIX}-{os.getpid()}-{role}"
        check("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix of a command line that runs a program in this namespace."""
        return ["ip", "netns", "exec", self.name]

    def ip(self, *args: str) -> None:
        check("ip", "-n", self.name, *args)

    def run(self, *argv: str) -> None:
        check(*self.exec_prefix, *argv)

    def call[T](self, fn: Callable[[], T]) -> T:
        """``fn()`` in a thread that has entered this namespace; its result or its exception."""
        result: list[T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                with (_NETNS_DIR / self.name).open() as handle:
                    os.setns(handle.fileno(), os.CLONE_NEWNET)
                result.append(fn())
            except BaseException as exc:  # handed to the caller's thread
                error.append(exc)

        thread = threading.Thread(target=target, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]

    def delete(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _run("ip", "netns", "delete", self.name)


def veth(a: Netns, a_name: str, b: Netns, b_name: str) -> None:
    """A veth pair created directly inside two namespaces, both ends up."""
    check(
        "ip",
        "link",
        "add",
        "name",
        a_name,
        "netns",
        a.name,
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b.name,
    )
    a.ip("link", "set", a_name, "up")
    b.ip("link", "set", b_name, "up")
