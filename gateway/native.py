"""The hot-path modules, compiled with mypyc from this same source, and the rule that keeps
the compiled code and the source in step.

`make` compiles the modules below (scripts/build_native.py) next to their .py files, where
Python imports an extension module before the source. The build records each source's
SHA-256 in ``_native.json``. When gateway is imported, every compiled module's source is
hashed again: if any differs from what it was built from (an edit since the last build),
every one of them is loaded from its .py instead. A compiled module calls the others of its
group directly, so they are used together or not at all. The code that runs is then always
the code in the tree: slower until `make native` rebuilds, never different.
See docs/native.md.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# Interpreter-bound code run per message: redaction and its verification, and the HL7 and
# free-text inspectors the verification (and the proxy's hot path) share. The redactor's
# entry point (gateway.redact.redactor) stays interpreted: it is thin, and its tests replace
# a format redactor to prove that an unexpected exception blocks.
NATIVE_MODULES = (
    "gateway.inspect.freetext",
    "gateway.inspect.hl7v2",
    "gateway.redact.fhir",
    "gateway.redact.hl7v2",
    "gateway.redact.safe_harbor",
    "gateway.redact.text",
    "gateway.redact.verify",
)
# The library the compiled modules share (mypyc's group): gateway/_native__mypyc*.so.
GROUP = "gateway._native"
PACKAGE_DIR = Path(__file__).parent
MANIFEST = PACKAGE_DIR / "_native.json"
# "0": load every module from its source (and `make` builds none), to compare or to debug.
DISABLE_ENV = "PHI_GATEWAY_NATIVE"


def source_of(module: str, root: Path = PACKAGE_DIR.parent) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_digests(
    modules: Sequence[str] = NATIVE_MODULES, root: Path = PACKAGE_DIR.parent
) -> dict[str, str]:
    return {module: digest(source_of(module, root)) for module in modules}


def compiled_files(module: str, root: Path = PACKAGE_DIR.parent) -> list[Path]:
    """The extension modules built for ``module``, whatever the platform suffix."""
    source = source_of(module, root)
    return [
        path
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (path := source.with_name(source.stem + suffix)).is_file()
    ]


@dataclass(frozen=True)
class NativeState:
    built: bool  # compiled modules are on disk
    current: bool  # ... and were built from the sources in the tree
    stale: tuple[str, ...] = ()  # the modules whose source changed since (or no record)
    disabled: bool = False  # PHI_GATEWAY_NATIVE=0

    @property
    def in_use(self) -> bool:
        return self.built and self.current and not self.disabled

    def describe(self) -> str:
        if self.disabled:
            return f"interpreted ({DISABLE_ENV}=0)"
        if not self.built:
            return "interpreted (no compiled modules: `make native` builds them)"
        if not self.current:
            return (
                f"interpreted: {', '.join(self.stale)} changed since the compiled modules were "
                "built (`make native` rebuilds them)"
            )
        return f"compiled (mypyc): {len(NATIVE_MODULES)} hot-path modules"


def read_state(
    modules: Sequence[str] = NATIVE_MODULES,
    root: Path = PACKAGE_DIR.parent,
    manifest: Path = MANIFEST,
) -> NativeState:
    disabled = os.environ.get(DISABLE_ENV, "") == "0"
    if not any(compiled_files(module, root) for module in modules):
        return NativeState(built=False, current=False, disabled=disabled)
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    digests = source_digests(modules, root)
    stale = tuple(
        m for m in modules if recorded.get(m) != digests[m] or not compiled_files(m, root)
    )
    return NativeState(built=True, current=not stale, stale=stale, disabled=disabled)


class SourceFirst:
    """A meta path finder (importlib.abc.MetaPathFinder's protocol; that module costs ~40 ms
    to import) that loads the named modules from their .py files, past any compiled module
    beside them."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = frozenset(modules)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules or not path:
            return None
        for directory in path:
            source = Path(directory) / (fullname.rpartition(".")[2] + ".py")
            if source.is_file():
                loader = importlib.machinery.SourceFileLoader(fullname, str(source))
                return importlib.util.spec_from_file_location(fullname, source, loader=loader)
        return None


STATE = read_state()
if STATE.built and not STATE.in_use:
    sys.meta_path.insert(0, SourceFirst(NATIVE_MODULES))
