r"""Cut the Data Security Finding class (2006) and the Base Event (0) out of a compiled OCSF
schema, with every object they reach and every type, descriptions dropped: the pinned file
the OCSF tests check our events against (``data_security_finding.json`` beside this file).

Regenerate (needs the schema repository at the tag and ocsf-lib, neither used by the suite):
    git clone --branch 1.8.0 https://github.com/ocsf/ocsf-schema
    python -m ocsf.compile --ignore-extension windows linux macos --no-prefix-extensions \
        ocsf-schema > compiled.json          # ocsf-lib 0.10.4
    python tests/support/ocsf/extract.py compiled.json \
        > tests/support/ocsf/data_security_finding.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

CLASS = "data_security_finding"


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, spec in sorted(attributes.items()):
        entry: dict[str, Any] = {"type": spec["type"], "requirement": spec.get("requirement")}
        if spec.get("is_array"):
            entry["is_array"] = True
        if spec.get("enum"):
            entry["enum"] = sorted(spec["enum"])
        if spec.get("profile"):
            entry["profile"] = spec["profile"]
        kept[name] = entry
    return kept


def _class(cls: dict[str, Any], uid: int, category_uid: int) -> dict[str, Any]:
    return {
        "name": cls["name"],
        "uid": uid,
        "category_uid": category_uid,
        "attributes": _attributes(cls["attributes"]),
        "constraints": cls.get("constraints") or {},
    }


def extract(compiled: dict[str, Any]) -> dict[str, Any]:
    cls = compiled["classes"][CLASS]
    base = compiled["classes"]["base_event"]
    objects: dict[str, Any] = {}
    pending = [spec["type"] for c in (cls, base) for spec in c["attributes"].values()]
    while pending:
        name = pending.pop()
        if name in objects or name not in compiled["objects"]:
            continue
        obj = compiled["objects"][name]
        objects[name] = {
            "attributes": _attributes(obj["attributes"]),
            "constraints": obj.get("constraints") or {},
        }
        pending.extend(spec["type"] for spec in obj["attributes"].values())
    types = {
        name: {k: spec.get(k) for k in ("type", "regex", "range", "max_len") if spec.get(k)}
        for name, spec in compiled["types"].items()
    }
    return {
        "version": compiled["version"],
        "classes": {"2006": _class(cls, cls["uid"], 2), "0": _class(base, 0, 0)},
        "objects": dict(sorted(objects.items())),
        "types": types,
    }


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        print(json.dumps(extract(json.load(handle)), indent=1, sort_keys=True))
