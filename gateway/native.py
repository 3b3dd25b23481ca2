"""The hot-path modules, compiled with mypyc from this same source, and the rule that keeps
the compiled code and the source in step.

`make` compiles the modules below (scripts/build_native.py) next to their .py files, where
Python imports an extension module before the source. The build records the SHA-256 of every
source file of the package in ``_native.json``: the compiled modules were type-checked
against all of them (a changed signature in an interpreted module they call changes what the
compiled code accepts). When gateway is imported, the sources are hashed again; if any
differs from the record, or a compiled file is there that the record does not name, every
gateway module loads from its .py. A compiled module calls the others of its group directly,
so they are used together or not at all. The code that runs is then always the code in the
tree: slower until `make native` rebuilds, never different. See docs/native.md.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# Interpreter-bound code run per message: the identifier patterns and free-text detectors,
# the HL7 v2 and FHIR inspectors, redactors and verifications, the X12 envelope and loops.
# The stage entry points (gateway.inspector, gateway.redactor) and the format handlers stay
# interpreted: they are thin, and tests replace a format's redactor to prove that an
# unexpected exception blocks.
NATIVE_MODULES = (
    "gateway.formats.dicom.json_model",
    "gateway.formats.fhir.inspect",
    "gateway.formats.fhir.redact",
    "gateway.formats.fhir.resources",
    "gateway.formats.fhir.verify",
    "gateway.formats.generic_json",
    "gateway.formats.hl7v2.er7",
    "gateway.formats.hl7v2.inspect",
    "gateway.formats.hl7v2.redact",
    "gateway.formats.hl7v2.verify",
    "gateway.formats.x12.envelope",
    "gateway.formats.x12.patient",
    "gateway.phi.fields",
    "gateway.phi.freetext",
    "gateway.phi.patterns",
    "gateway.phi.safe_harbor",
    "gateway.phi.scrub",
)
# The library the compiled modules share (mypyc's group): gateway/_native__mypyc*.so.
GROUP = "gateway._native"
SHARED_LIBRARY = GROUP.rpartition(".")[2] + "__mypyc"
PACKAGE_DIR = Path(__file__).parent
MANIFEST = PACKAGE_DIR / "_native.json"
# "0" (or false/no/off): load every module from its source, and `make native` builds none:
# to compare, to debug with a Python debugger, where no compiler may be installed.
DISABLE_ENV = "PHI_GATEWAY_NATIVE"
_OFF = frozenset({"0", "false", "no", "off"})


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in _OFF


def source_of(module: str, root: Path = PACKAGE_DIR.parent) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_digests(package: Path = PACKAGE_DIR) -> dict[str, str]:
    """Every source file of the package, by its path inside it."""
    return {
        path.relative_to(package).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(package.rglob("*.py"))
    }


def compiled_modules(package: Path = PACKAGE_DIR) -> dict[str, list[Path]]:
    """Every extension module under the package (this Python's suffixes), by module name;
    the group's shared library is not a module of the tree and is left out."""
    found: dict[str, list[Path]] = {}
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in package.rglob("*" + suffix):
            stem = path.name[: -len(suffix)]
            if "." in stem or stem == SHARED_LIBRARY:
                continue  # a longer suffix of the same file, or the shared library
            parts = (package.name, *path.parent.relative_to(package).parts, stem)
            found.setdefault(".".join(parts), []).append(path)
    return found


@dataclass(frozen=True)
class NativeState:
    built: bool  # compiled modules are on disk
    current: bool  # ... and were built from the sources in the tree, as the record says
    stale: tuple[str, ...] = ()  # why not: the sources changed since, unknown files
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
            shown = ", ".join(self.stale[:3]) + (" ..." if len(self.stale) > 3 else "")
            return (
                f"interpreted: {shown} changed since the compiled modules were built "
                "(`make native` rebuilds them)"
            )
        return f"compiled (mypyc): {len(NATIVE_MODULES)} hot-path modules"


def read_record(manifest: Path = MANIFEST) -> dict[str, object]:
    try:
        record = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def read_state(
    package: Path = PACKAGE_DIR,
    modules: Sequence[str] = NATIVE_MODULES,
    manifest: Path = MANIFEST,
) -> NativeState:
    compiled = compiled_modules(package)
    if not compiled:
        return NativeState(built=False, current=False, disabled=disabled())
    record = read_record(manifest)
    recorded = record.get("sources")
    recorded = recorded if isinstance(recorded, dict) else {}
    digests = source_digests(package)
    changed = sorted(
        f"{package.name}/{name}"
        for name in digests.keys() | recorded.keys()
        if digests.get(name) != recorded.get(name)
    )
    unknown = sorted(f"compiled {m} (not in the record)" for m in compiled.keys() - set(modules))
    missing = sorted(f"{m} (not compiled)" for m in set(modules) - compiled.keys())
    if record.get("modules") != sorted(modules):
        missing.append("the list of compiled modules")
    stale = tuple(changed + unknown + missing)
    return NativeState(built=True, current=not stale, stale=stale, disabled=disabled())


def configured_compiler() -> str:
    """The C compiler this Python was built with (setuptools compiles and links with it)."""
    return str(sysconfig.get_config_var("CC") or "cc").split()[0]


def compiler_problem() -> str:
    """'' when this Python can build extension modules here, else why not."""
    if shutil.which(configured_compiler()) is None and shutil.which("cc") is None:
        return "no C compiler found"
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.is_file():
        return f"no Python headers ({include} is missing: the python3-dev package)"
    return ""


class SourceFirst:
    """A meta path finder (importlib.abc.MetaPathFinder's protocol; that module costs ~40 ms
    to import) that loads every module of the package from its .py file, past any compiled
    module beside it."""

    def __init__(self, package: str) -> None:
        self.prefix = package + "."

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self.prefix) or not path:
            return None
        for directory in path:
            source = Path(directory) / (fullname.rpartition(".")[2] + ".py")
            if source.is_file():
                loader = importlib.machinery.SourceFileLoader(fullname, str(source))
                return importlib.util.spec_from_file_location(fullname, source, loader=loader)
        return None  # a package or a module without a source: the usual finders decide


STATE = read_state()
if STATE.built and not STATE.in_use:
    sys.meta_path.insert(0, SourceFirst(__package__ or "gateway"))
