"""A small, made-up geo world for the tests: provider range files in each provider's own
format, a region → country table, and two MaxMind databases (written with mmdb-writer) that
disagree on purpose. Every prefix here is a fixture, not real provider data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from gateway.geo.update import update_ranges
from tests.support.mmdb import build_test_mmdb

REGIONS = """\
# provider\tregion\tcountry\tunsure\tnote
provider\tregion\tcountry\tunsure\tnote
aws\tGLOBAL\tZZ\t\tanycast
aws\tus-east-1\tUS\t\t
aws\teu-west-1\tIE\t\t
aws\tus-south-1\tUS\t?\tguess
aws-nbg\tus-east-1-bue-1\tAR\t\tBuenos Aires Local Zone
gcp\tglobal\tZZ\t\t
gcp\teurope-west1\tBE\t\t
gcp\tus-central1\tUS\t\t
azure\twesteurope\tNL\t\t
azure\teastus\tUS\t\t
oracle\tus-ashburn-1\tUS\t\t
oracle\teu-frankfurt-1\tDE\t\t
"""

AWS = {
    "syncToken": "1",
    "createDate": "2026-08-22-15-17-05",
    "prefixes": [
        {"ip_prefix": p, "region": r, "service": "AMAZON", "network_border_group": g}
        for p, r, g in [
            ("52.0.0.0/12", "us-east-1", "us-east-1"),
            ("52.1.0.0/16", "eu-west-1", "eu-west-1"),  # more specific than the /12: wins
            ("52.2.0.0/16", "us-east-1", "us-east-1-bue-1"),  # a US region, in Argentina
            ("52.3.0.0/16", "GLOBAL", "GLOBAL"),  # CloudFront-like: anycast
            ("52.4.0.0/16", "us-south-1", "us-south-1"),  # country guessed
            ("203.0.113.0/24", "eu-west-1", "eu-west-1"),  # TEST-NET-3: reserved, never placed
        ]
    ],
    "ipv6_prefixes": [
        {
            "ipv6_prefix": "2600:1f00::/24",
            "region": "us-east-1",
            "service": "AMAZON",
            "network_border_group": "us-east-1",
        }
    ],
}
GCP = {
    "syncToken": "1",
    "creationTime": "2026-08-20T07:04:30.974055",
    "prefixes": [
        {"ipv4Prefix": "34.64.0.0/16", "service": "Google Cloud", "scope": "europe-west1"},
        {"ipv4Prefix": "34.65.0.0/16", "service": "Google Cloud", "scope": "global"},
        {"ipv6Prefix": "2600:1900::/28", "service": "Google Cloud", "scope": "us-central1"},
    ],
}
AZURE = {
    "changeNumber": 1,
    "cloud": "Public",
    "values": [
        {
            "name": name,
            "id": name,
            "properties": {"region": region, "addressPrefixes": prefixes},
        }
        for name, region, prefixes in [
            ("AzureCloud", "", ["20.0.0.0/8"]),  # aggregate: not used
            ("AzureCloud.westeurope", "westeurope", ["20.50.0.0/16"]),
            ("AzureCloud.eastus", "eastus", ["20.51.0.0/16"]),
            ("Storage.WestEurope", "westeurope", ["20.51.7.0/24", "20.50.3.0/24"]),
            ("AzureFrontDoor.Frontend", "", ["13.107.0.0/24"]),
        ]
    ],
}
ORACLE = {
    "last_updated_timestamp": "2025-07-21T07:13:25.457838",
    "regions": [
        {"region": "us-ashburn-1", "cidrs": [{"cidr": "129.80.0.0/16", "tags": ["OCI"]}]},
        {"region": "eu-frankfurt-1", "cidrs": [{"cidr": "130.61.0.0/16", "tags": ["OCI"]}]},
    ],
}
CLOUDFLARE = "104.16.0.0/13\n2606:4700::/32\n"

# Two databases that disagree on purpose.
ALPHA = {
    "52.0.0.0/16": "IE",  # a provider says us-east-1: the provider wins
    "52.1.0.0/16": "US",  # a provider says eu-west-1: the provider wins
    "52.4.0.0/16": "DE",  # the provider's country is a guess: any-foreign → foreign
    "8.8.8.0/24": "US",
    "9.9.9.0/24": "US",
    "104.16.0.0/13": "US",  # anycast: no database answer makes it domestic
    "34.65.0.0/16": "US",
}
BETA = {
    "8.8.8.0/24": "DE",  # alpha says US
    "9.9.9.0/24": "PR",  # both allowed: domestic
    "1.0.0.0/24": "JP",  # alpha has no answer
    "203.0.113.0/24": "AU",  # the TEST-NET-3 bug of a real database
    "52.0.0.0/16": "US",
}
CLOUDFLARE_DATE = dt.date(2026, 5, 12)
AZURE_DATE = dt.date(2025, 11, 6)


def write_provider_files(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "aws": ("aws.json", json.dumps(AWS)),
        "gcp": ("gcp.json", json.dumps(GCP)),
        "azure": ("azure.json", json.dumps(AZURE)),
        "oracle": ("oracle.json", json.dumps(ORACLE)),
        "cloudflare": ("cloudflare.txt", CLOUDFLARE),
    }
    paths = {}
    for provider, (name, text) in files.items():
        paths[provider] = directory / name
        paths[provider].write_text(text)
    (directory / "regions.tsv").write_text(REGIONS)
    return paths


def build_world(directory: Path) -> tuple[Path, Path, Path]:
    """(ranges file, alpha.mmdb, beta.mmdb) in ``directory``."""
    files = write_provider_files(directory)
    ranges = directory / "ranges.bin"
    update_ranges(
        ranges,
        files,
        region_table=directory / "regions.tsv",
        dates={"azure": AZURE_DATE, "cloudflare": CLOUDFLARE_DATE},
    )
    alpha = build_test_mmdb(directory / "alpha.mmdb", ALPHA)
    beta = build_test_mmdb(directory / "beta.mmdb", BETA)
    return ranges, alpha, beta
