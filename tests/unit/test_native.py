"""The compiled hot-path modules (gateway/native.py): which code runs, and that the compiled
code does what the source says."""

from __future__ import annotations

import importlib.machinery
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import native
from gateway.config import parse_config
from gateway.formats.fhir import FHIR_JSON, FHIR_NDJSON, FHIR_XML
from gateway.formats.hl7v2 import HL7V2
from gateway.formats.hl7v2.inspect import inspect_hl7
from gateway.inspector import Inspector
from gateway.phi.freetext import scan_text
from tests.support.patients import (
    fhir_patient_json,
    fhir_patient_xml,
    fhir_rich_bundle,
    hl7_rich,
    make_patient,
)
from tests.support.redaction import InspectingRedactor

REPO = Path(__file__).parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
MODULES = ("pkg.one", "pkg.two")


def fake_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A package ``pkg``: two "compiled" modules (files that are not real extension modules:
    importing one fails) and a helper they would use, with the build's record."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("def width() -> int:\n    return 3\n")
    for name in ("one", "two"):
        (package / f"{name}.py").write_text(f"WHO = 'source {name}'\n")
        (package / f"{name}{SUFFIX}").write_bytes(b"not an extension module")
    manifest = package / "_native.json"
    record = {"modules": sorted(MODULES), "sources": native.source_digests(package)}
    manifest.write_text(json.dumps(record))
    return package, manifest


@pytest.fixture(autouse=True)
def _native_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The record's tests judge files, whatever PHI_GATEWAY_NATIVE the suite runs under (a
    test that sets it sets it itself); the running process's own state is read at import."""
    monkeypatch.delenv(native.DISABLE_ENV, raising=False)


def state_of(package: Path, manifest: Path) -> native.NativeState:
    return native.read_state(package, MODULES, manifest)


def test_compiled_modules_built_from_these_sources_are_current(tmp_path: Path) -> None:
    state = state_of(*fake_tree(tmp_path))
    assert state.built and state.current and not state.stale


def test_an_edited_compiled_source_makes_the_compiled_modules_stale(tmp_path: Path) -> None:
    package, manifest = fake_tree(tmp_path)
    (package / "two.py").write_text("WHO = 'edited'\n")
    state = state_of(package, manifest)
    assert not state.current and state.stale == ("pkg/two.py",)
    assert "pkg/two.py changed since the compiled modules were built" in state.describe()


def test_an_edited_module_they_import_makes_them_stale_too(tmp_path: Path) -> None:
    """The compiled code was type-checked against it: a new signature there can make the
    compiled code raise where the source would not."""
    package, manifest = fake_tree(tmp_path)
    (package / "helper.py").write_text("def width() -> tuple[int, int]:\n    return 3, 4\n")
    (package / "new.py").write_text("")
    assert state_of(package, manifest).stale == ("pkg/helper.py", "pkg/new.py")


@pytest.mark.parametrize("record", [None, "not json", "[1]", "{}", '{"modules": []}'])
def test_without_a_usable_record_the_compiled_modules_are_stale(
    tmp_path: Path, record: str | None
) -> None:
    package, manifest = fake_tree(tmp_path)
    if record is None:
        manifest.unlink()
    else:
        manifest.write_text(record)
    state = state_of(package, manifest)
    assert state.built and not state.current and not state.in_use


def test_a_compiled_file_the_record_does_not_name_is_stale(tmp_path: Path) -> None:
    """A module taken off the list keeps its old compiled file: it must not win."""
    package, manifest = fake_tree(tmp_path)
    (package / f"helper{SUFFIX}").write_bytes(b"left from an older build")
    assert state_of(package, manifest).stale == ("compiled pkg.helper (not in the record)",)


def test_a_listed_module_without_its_compiled_file_is_stale(tmp_path: Path) -> None:
    package, manifest = fake_tree(tmp_path)
    (package / f"one{SUFFIX}").unlink()
    assert state_of(package, manifest).stale == ("pkg.one (not compiled)",)


def test_no_compiled_files_is_told_apart_from_stale_ones(tmp_path: Path) -> None:
    package, manifest = fake_tree(tmp_path)
    for path in package.glob(f"*{SUFFIX}"):
        path.unlink()
    state = state_of(package, manifest)
    assert not state.built and not state.in_use
    assert "no compiled modules" in state.describe()


@pytest.mark.parametrize("value", ["0", "false", "Off", " no "])
def test_the_environment_turns_the_compiled_modules_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(native.DISABLE_ENV, value)
    state = state_of(*fake_tree(tmp_path))
    assert state.current and not state.in_use
    assert state.describe() == f"interpreted ({native.DISABLE_ENV}=0)"


def test_every_module_of_the_package_loads_from_source_past_compiled_files(
    tmp_path: Path,
) -> None:
    """Without the finder, Python prefers the (here broken) extension module and fails."""
    package, _ = fake_tree(tmp_path)
    (package / f"helper{SUFFIX}").write_bytes(b"not an extension module")
    script = (
        "import sys\n"
        "from gateway.native import SourceFirst\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "try:\n"
        "    import pkg.one\n"
        "except ImportError:\n"
        "    print('extension tried')\n"
        "sys.meta_path.insert(0, SourceFirst('pkg'))\n"
        "import pkg.two, pkg.helper\n"
        "print(pkg.two.WHO, pkg.two.__file__.endswith('.py'), pkg.helper.width())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert run.stdout.splitlines() == ["extension tried", "source two True 3"]


# Run in a new process: where it loads every compiled module from, and what ``result`` holds.
_LOADED = (
    "import importlib, json\n"
    "from gateway import native\n"
    "files = {m: importlib.import_module(m).__file__ for m in native.NATIVE_MODULES}\n"
    "%s\n"
    "print(json.dumps({'files': files, 'result': result}))\n"
)


def in_new_process(cwd: Path, env: dict[str, str], code: str = "result = None") -> Any:
    """Where a new Python process started in ``cwd`` loads the compiled modules from (a
    dict by module name), and the ``result`` that ``code`` computes there."""
    run = subprocess.run(
        [sys.executable, "-c", _LOADED % code],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env=env,
    )
    answer = json.loads(run.stdout)
    assert sorted(answer["files"]) == sorted(native.NATIVE_MODULES)
    return answer


def loaded_files(cwd: Path, env: dict[str, str]) -> dict[str, str]:
    files: dict[str, str] = in_new_process(cwd, env)["files"]
    return files


def test_the_gateway_says_which_code_runs() -> None:
    for module in native.NATIVE_MODULES:
        __import__(module)
        path = sys.modules[module].__file__
        assert path is not None
        assert path.endswith(".py") != native.STATE.in_use, (module, native.STATE.describe())


def test_a_built_tree_with_one_edited_source_runs_every_module_from_source(
    tmp_path: Path,
) -> None:
    """The real switch-over, in a copy of this built tree: as built, every module is loaded
    compiled; after an edit to a module that is not even compiled, every one from source."""
    if not native.STATE.in_use:
        pytest.skip(f"the compiled modules are not in use here: {native.STATE.describe()}")
    shutil.copytree(
        REPO / "gateway", tmp_path / "gateway", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if k != native.DISABLE_ENV}
    as_built = loaded_files(tmp_path, env)
    assert all(f.startswith(str(tmp_path)) and f.endswith(SUFFIX) for f in as_built.values())
    with (tmp_path / "gateway" / "model.py").open("a") as model:
        model.write("\n# edited after the build\n")
    edited = loaded_files(tmp_path, env)
    assert all(f.startswith(str(tmp_path)) and f.endswith(".py") for f in edited.values())


# Set by `make test`, which runs scripts/build_native.py before the suite: there the compiled
# modules must be in use. A plain `pytest tests/unit` (no build asked for) skips the check.
REQUIRE_ENV = "PHI_GATEWAY_REQUIRE_NATIVE"


def test_make_builds_the_compiled_modules_where_a_compiler_exists() -> None:
    """`make test` builds first: where this Python can build extension modules, the suite
    runs the compiled code (a build that quietly fell back would leave the gateway slow)."""
    if native.disabled():
        pytest.skip(f"{native.DISABLE_ENV}=0: interpreted on purpose")
    problem = native.compiler_problem()
    if problem:
        pytest.skip(f"the gateway runs interpreted here: {problem}")
    if os.environ.get(REQUIRE_ENV) != "1":
        pytest.skip(f"no build was asked for ({REQUIRE_ENV}=1 is set by `make test`)")
    assert native.STATE.in_use, native.STATE.describe()


# -- the compiled code against its own source ------------------------------------------------

_CONFIGS: tuple[dict[str, Any], ...] = (
    {},
    {"dates": "shift"},
    {"identifiers": "remove", "z_segments": "keep"},
    {"keep": ["PID-11", "Patient.address", "NK1-2"]},
)
_ODD_KEYS = (
    "value", "unit", "code", "system", "display", "reference", "text", "id", "birthDate",
    "identifier", "telecom", "name", "family", "given", "address", "line", "postalCode",
    "valueQuantity", "valueString", "extension", "url", "note", "data", "contained", "entry",
    "resource", "fullUrl", "meta", "security", "div", "period", "start", "comparator",
)  # fmt: skip
_ODD_SCALARS = (
    None, True, False, 0, -1, 89, 90, 91, 2**63, -(2**63) - 1, 10**400, -(10**400), 1.5,
    1e308, "", "90", "a", "yr", "mg", "Patient/p1", "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
    "1931-03-04", "555-12-3456", "jane@example.org", "(555) 123-4567", "Jane Quillfeather",
    "12 Oak Street", "Mother: Mrs. Jane Smith, 12 Oak Street", "<div>Jane</div>",
)  # fmt: skip


def odd_documents(count: int, seed: int) -> list[bytes]:
    """FHIR-shaped JSON with values of every JSON type where the rules expect one: numbers
    past 64 bits and past float's range, booleans for numbers, lists for objects."""
    rng = random.Random(seed)

    def node(depth: int) -> object:
        roll = rng.random()
        if depth > 4 or roll < 0.45:
            return rng.choice(_ODD_SCALARS)
        if roll < 0.6:
            return [node(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(_ODD_KEYS): node(depth + 1) for _ in range(rng.randint(0, 5))}

    documents = []
    for _ in range(count):
        rtype = rng.choice(("Patient", "Observation", "Bundle", "Parameters", "RelatedPerson"))
        body = {rng.choice(_ODD_KEYS): node(1) for _ in range(rng.randint(1, 6))}
        documents.append(json.dumps({"resourceType": rtype, **body}).encode())
    return documents


def inspected(body: bytes) -> list[object]:
    inspection = Inspector(parse_config({}).limits).inspect(body)
    findings = [str(f) for f in inspection.findings]
    return [inspection.format.value, inspection.contains_phi, inspection.error, findings]


def outcomes() -> list[object]:
    """Redactions (four configurations, four formats, odd JSON) and inspections (HL7, FHIR
    JSON and XML, free text, odd JSON) of generated patients, as JSON values."""
    results: list[object] = []
    for number, settings in enumerate(_CONFIGS):
        config = parse_config({"redaction": settings})
        redactor = InspectingRedactor(config, b"native-equivalence-secret")
        for seed in range(12):
            patient = make_patient(seed)
            bundle = json.dumps(fhir_rich_bundle(patient)).encode()
            payloads = (
                (hl7_rich(patient).encode(), HL7V2),
                (bundle, FHIR_JSON),
                (
                    fhir_patient_json(patient) + b"\n" + bundle.replace(b"\n", b""),
                    FHIR_NDJSON,
                ),
                (fhir_patient_xml(patient), FHIR_XML),
            )
            for body, fmt in payloads:
                outcome = redactor.redact(body, "", fmt)
                results.append(
                    [outcome.body.decode(), outcome.counts, outcome.locations, outcome.error]
                )
        for body in odd_documents(150, seed=number):
            outcome = redactor.redact(body, "", FHIR_JSON)
            results.append([outcome.body.decode(), outcome.counts, outcome.error])
            if number == 0:
                results.append(inspected(body))
    for seed in range(12):
        patient = make_patient(seed)
        hl7 = hl7_rich(patient)
        results.append([str(f) for f in inspect_hl7(hl7).findings])
        results.append(inspected(json.dumps(fhir_rich_bundle(patient)).encode()))
        results.append(inspected(fhir_patient_xml(patient)))
        scan = scan_text(hl7.replace("\r", "\n"))
        results.append([scan.contains_phi, [str(f) for f in scan.findings]])
    as_json: list[object] = json.loads(json.dumps(results))
    return as_json


def test_compiled_and_interpreted_code_give_the_same_results() -> None:
    """The same traffic through the compiled modules (here) and through their sources (a
    process with PHI_GATEWAY_NATIVE=0, which must load every one of them from .py)."""
    if not native.STATE.in_use:
        pytest.skip(f"the compiled modules are not in use here: {native.STATE.describe()}")
    env = {**os.environ, native.DISABLE_ENV: "0"}
    code = "from tests.unit.test_native import outcomes\nresult = outcomes()"
    interpreted = in_new_process(REPO, env, code)
    assert all(path.endswith(".py") for path in interpreted["files"].values())
    for module in native.NATIVE_MODULES:
        path = sys.modules[module].__file__
        assert path is not None and path.endswith(SUFFIX), module
    compiled = outcomes()
    assert len(compiled) == 4 * (12 * 4 + 150) + 150 + 12 * 4
    assert any(row[-1] == "" for row in compiled[:48] if isinstance(row, list))  # redacted
    assert compiled == interpreted["result"]
