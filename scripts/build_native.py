"""Compile gateway.native.NATIVE_MODULES with mypyc, in place, and record the sources they
were built from (gateway/_native.json). Nothing is done when the compiled modules already
match the sources; without a C compiler, or with PHI_GATEWAY_NATIVE=0, the gateway runs
interpreted and this says so. A compile error fails: a module mypyc cannot compile is a
change to fix, not a reason to go slow without notice.

Run by `make` (the `native` target): .venv/bin/python scripts/build_native.py [--force]"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import native  # noqa: E402 - the project's root on the path first

BUILD_DIR = ROOT / "build" / "native"


def remove_compiled() -> None:
    for paths in native.compiled_modules().values():
        for path in paths:
            path.unlink()
    for path in native.PACKAGE_DIR.glob(native.SHARED_LIBRARY + ".*"):
        path.unlink()
    native.MANIFEST.unlink(missing_ok=True)


def use_available_compiler() -> None:
    """Where the compiler this Python was built with is missing, ``cc``."""
    if shutil.which(native.configured_compiler()) is None and "CC" not in os.environ:
        os.environ["CC"] = "cc"
        os.environ["LDSHARED"] = "cc -shared"


def build() -> dict[str, object]:
    # Imported here: only the build needs them (dev dependencies, not the runtime's).
    from mypyc.build import mypycify
    from setuptools import setup

    paths = [str(native.source_of(m, ROOT).relative_to(ROOT)) for m in native.NATIVE_MODULES]
    sources = native.source_digests()  # before compiling: what is compiled
    remove_compiled()
    use_available_compiler()
    extensions = mypycify(
        # mypy's own cache, not the one `make typecheck` may be writing at the same time
        [f"--cache-dir={BUILD_DIR / 'mypy-cache'}", *paths],
        opt_level="3",
        group_name=native.GROUP,
        target_dir=str(BUILD_DIR / "c"),
    )
    setup(
        name="phi-gateway-native",
        ext_modules=extensions,
        script_args=[
            "--quiet",
            "build_ext",
            "--inplace",
            f"--parallel={os.cpu_count() or 1}",
            f"--build-temp={BUILD_DIR / 'temp'}",
            f"--build-lib={BUILD_DIR / 'lib'}",
        ],
    )
    if native.source_digests() != sources:
        remove_compiled()
        raise SystemExit("native: the sources changed during the build: run it again")
    return {
        "modules": sorted(native.NATIVE_MODULES),
        "sources": sources,
        "mypy": mypy_version(),
        "python": sys.implementation.cache_tag,
    }


def mypy_version() -> str:
    from mypy.version import __version__

    return __version__


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--remove", action="store_true", help="remove the compiled modules")
    args = parser.parse_args()
    os.chdir(ROOT)  # mypyc names the modules after the paths it is given
    if args.remove:
        remove_compiled()
        print("native: compiled modules removed; the gateway runs interpreted")
        return 0
    if native.disabled():
        print(f"native: {native.DISABLE_ENV}=0: nothing compiled; the gateway runs interpreted")
        return 0
    state = native.read_state()
    # A new mypy in the lock rebuilds too: the code is the same, the compiler is not.
    same_compiler = native.read_record().get("mypy") == mypy_version()
    if state.built and state.current and same_compiler and not args.force:
        return 0
    problem = native.compiler_problem()
    if problem:
        print(
            f"native: WARNING {problem}: the gateway runs interpreted (slower; see "
            "docs/native.md, then `make native`)",
            file=sys.stderr,
        )
        remove_compiled()
        return 0
    started = time.monotonic()
    record = build()
    native.MANIFEST.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    after = native.read_state()
    if not after.current:
        print(f"native: after the build: {', '.join(after.stale)}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(f"native: {len(native.NATIVE_MODULES)} modules compiled with mypyc in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
