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
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import native  # noqa: E402 - the project's root on the path first

BUILD_DIR = ROOT / "build" / "native"


def compiler() -> str | None:
    configured = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(configured) or shutil.which("cc")


def remove_compiled() -> None:
    for module in native.NATIVE_MODULES:
        for path in native.compiled_files(module, ROOT):
            path.unlink()
    for path in native.PACKAGE_DIR.glob(native.GROUP.rpartition(".")[2] + "__mypyc*"):
        path.unlink()
    native.MANIFEST.unlink(missing_ok=True)


def build() -> None:
    # Imported here: only the build needs them (dev dependencies, not the runtime's).
    from mypyc.build import mypycify
    from setuptools import setup

    paths = [str(native.source_of(m, ROOT).relative_to(ROOT)) for m in native.NATIVE_MODULES]
    digests = native.source_digests(root=ROOT)  # before compiling: what is compiled
    remove_compiled()
    extensions = mypycify(
        paths, opt_level="3", group_name=native.GROUP, target_dir=str(BUILD_DIR / "c")
    )
    jobs = str(os.cpu_count() or 1)
    setup(
        name="phi-gateway-native",
        ext_modules=extensions,
        script_args=[
            "--quiet",
            "build_ext",
            "--inplace",
            f"--parallel={jobs}",
            f"--build-temp={BUILD_DIR / 'temp'}",
            f"--build-lib={BUILD_DIR / 'lib'}",
        ],
    )
    native.MANIFEST.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


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
    if os.environ.get(native.DISABLE_ENV, "") == "0":
        print(f"native: {native.DISABLE_ENV}=0: nothing compiled; the gateway runs interpreted")
        return 0
    state = native.read_state(root=ROOT)
    if state.built and state.current and not args.force:
        return 0
    if compiler() is None:
        print(
            "native: WARNING no C compiler found: the gateway runs interpreted (slower; "
            "install gcc and run `make native`)",
            file=sys.stderr,
        )
        remove_compiled()
        return 0
    started = time.monotonic()
    build()
    after = native.read_state(root=ROOT)
    if not after.current:
        print(f"native: build left {', '.join(after.stale)} without a compiled module")
        return 1
    elapsed = time.monotonic() - started
    print(f"native: {len(native.NATIVE_MODULES)} modules compiled with mypyc in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
