"""The compiled hot-path modules (gateway/native.py): which code runs, and that the compiled
code does what the source says."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from gateway import native
from gateway.config import parse_config
from gateway.inspect.freetext import scan_text
from gateway.inspect.hl7v2 import inspect_hl7
from gateway.model import Format
from gateway.redact.redactor import Redactor
from tests.support.patients import fhir_rich_bundle, hl7_rich, make_patient

REPO = Path(__file__).parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def fake_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A package ``pkg`` with two modules, each with a "compiled" file that is not a real
    extension module (importing it would fail)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("one", "two"):
        (package / f"{name}.py").write_text(f"WHO = 'source {name}'\n")
        (package / f"{name}{SUFFIX}").write_bytes(b"not an extension module")
    manifest = package / "_native.json"
    digests = native.source_digests(("pkg.one", "pkg.two"), tmp_path)
    manifest.write_text(json.dumps(digests))
    return package, manifest


def test_compiled_modules_built_from_these_sources_are_current(tmp_path: Path) -> None:
    _, manifest = fake_tree(tmp_path)
    state = native.read_state(("pkg.one", "pkg.two"), tmp_path, manifest)
    assert state.built and state.current and not state.stale


def test_an_edited_source_makes_the_compiled_modules_stale(tmp_path: Path) -> None:
    package, manifest = fake_tree(tmp_path)
    (package / "two.py").write_text("WHO = 'edited'\n")
    state = native.read_state(("pkg.one", "pkg.two"), tmp_path, manifest)
    assert state.built and not state.current and state.stale == ("pkg.two",)
    assert "pkg.two changed since the compiled modules were built" in state.describe()


@pytest.mark.parametrize("record", [None, "not json", "[1]", "{}"])
def test_without_a_record_of_the_sources_every_module_is_stale(
    tmp_path: Path, record: str | None
) -> None:
    _, manifest = fake_tree(tmp_path)
    if record is None:
        manifest.unlink()
    else:
        manifest.write_text(record)
    state = native.read_state(("pkg.one", "pkg.two"), tmp_path, manifest)
    assert state.stale == ("pkg.one", "pkg.two")


def test_a_module_without_its_compiled_file_is_stale(tmp_path: Path) -> None:
    package, manifest = fake_tree(tmp_path)
    (package / f"one{SUFFIX}").unlink()
    state = native.read_state(("pkg.one", "pkg.two"), tmp_path, manifest)
    assert state.stale == ("pkg.one",)


def test_no_compiled_files_is_told_apart_from_stale_ones(tmp_path: Path) -> None:
    package, manifest = fake_tree(tmp_path)
    for path in package.glob(f"*{SUFFIX}"):
        path.unlink()
    state = native.read_state(("pkg.one", "pkg.two"), tmp_path, manifest)
    assert not state.built and not state.in_use
    assert "no compiled modules" in state.describe()


def test_the_source_is_loaded_past_a_compiled_file(tmp_path: Path) -> None:
    """Without the finder, Python prefers the (here broken) extension module and fails."""
    fake_tree(tmp_path)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from gateway.native import SourceFirst\n"
        "try:\n"
        "    import pkg.one\n"
        "except ImportError:\n"
        "    print('extension tried')\n"
        "sys.meta_path.insert(0, SourceFirst(['pkg.two']))\n"
        "import pkg.two\n"
        "print(pkg.two.WHO, pkg.two.__file__.endswith('.py'))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert run.stdout.splitlines() == ["extension tried", "source two True"]


def test_the_gateway_says_which_code_runs() -> None:
    assert native.STATE.describe().startswith(("compiled (mypyc)", "interpreted"))
    module = sys.modules["gateway.redact.hl7v2"]
    assert module.__file__ is not None
    assert module.__file__.endswith(".py") != native.STATE.in_use


def test_make_builds_the_compiled_modules_where_a_compiler_exists() -> None:
    """`make test` runs scripts/build_native.py first: with a C compiler, the suite runs the
    compiled code (a build that quietly fell back would leave the gateway slow)."""
    if os.environ.get(native.DISABLE_ENV) == "0":
        pytest.skip(f"{native.DISABLE_ENV}=0: interpreted on purpose")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None and shutil.which("cc") is None:
        pytest.skip("no C compiler here: the gateway runs interpreted")
    if native.STATE.built and not native.STATE.current:
        pytest.skip(f"sources edited since the last build ({native.STATE.describe()})")
    assert native.STATE.in_use, native.STATE.describe()


# -- the compiled code against its own source ------------------------------------------------


def outcomes() -> list[object]:
    """Redactions (both date options) and inspections of generated patients, as JSON values."""
    results: list[object] = []
    for dates in ("year", "shift"):
        config = parse_config({"redaction": {"dates": dates}})
        redactor = Redactor(config.redaction, config.limits, b"native-equivalence-secret")
        for seed in range(40):
            patient = make_patient(seed)
            hl7 = hl7_rich(patient)
            bundle = json.dumps(fhir_rich_bundle(patient)).encode()
            for body, fmt in ((hl7.encode(), Format.HL7V2), (bundle, Format.FHIR_JSON)):
                outcome = redactor.redact(body, "", fmt)
                results.append(
                    [outcome.body.decode(), outcome.counts, outcome.locations, outcome.error]
                )
            results.append([str(f) for f in inspect_hl7(hl7).findings])
            scan = scan_text(hl7.replace("\r", "\n"))
            results.append([scan.contains_phi, [str(f) for f in scan.findings]])
    as_json: list[object] = json.loads(json.dumps(results))
    return as_json


def test_compiled_and_interpreted_code_give_the_same_results() -> None:
    """The same generated traffic through the compiled modules (here) and through their
    sources (a process with PHI_GATEWAY_NATIVE=0)."""
    if not native.STATE.in_use:
        pytest.skip(f"the compiled modules are not in use here: {native.STATE.describe()}")
    script = (
        "import json\n"
        "from gateway import native\n"
        "from tests.unit.test_native import outcomes\n"
        "print(json.dumps({'in_use': native.STATE.in_use, 'outcomes': outcomes()}))\n"
    )
    env = {**os.environ, native.DISABLE_ENV: "0"}
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
    )
    interpreted = json.loads(run.stdout)
    assert interpreted["in_use"] is False
    compiled = outcomes()
    assert len(compiled) == 320
    assert compiled == interpreted["outcomes"]
