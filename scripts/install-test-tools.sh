#!/usr/bin/env bash
# Install the system tools the test suite uses, from Debian's packages, when they are missing:
#   promtool (package prometheus)   - checks and unit-tests configs/prometheus/ rules, runs the
#                                     scrape end-to-end test
#   pdftoppm (package poppler-utils) - renders the PDF block report to PNG in a test
#   initdb/pg_ctl (package postgresql) - a throwaway PostgreSQL for the multi-instance audit tests
#   DejaVu Sans (package fonts-dejavu-core) - a TrueType font the PDF tests embed (CID fonts
#                                     with ToUnicode maps, as word processors write them)
#   tesseract (packages tesseract-ocr, tesseract-ocr-eng) - OCR of scans and images (ocr.enabled)
#   haproxy (package haproxy)        - the balancer in front of `run --workers N`, and the
#                                     PROXY protocol sender of the client-address tests
#   keepalived (package keepalived)  - checks the reference deployment's VRRP config (deploy/)
#   rsyslogd (packages rsyslog, rsyslog-gnutls) - the TLS syslog receiver of the SIEM tests
#   chromium, chromedriver (packages chromium, chromium-driver) - the real browser of the
#                                     console tests (driven through Selenium)
# Idempotent: does nothing when every tool is present. Without root (or password-less sudo) it
# installs nothing and says so; the tests that need a missing tool then skip with a message.
# Services the packages would start are kept from starting (the tests start their own).
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr tesseract-ocr-eng)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v keepalived >/dev/null 2>&1 || [ -x /usr/sbin/keepalived ] || missing+=(keepalived)
[ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
compgen -G "/usr/lib/*/rsyslog/lmnsd_gtls.so" >/dev/null || missing+=(rsyslog-gnutls)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "install-test-tools: not root and no password-less sudo: cannot install ${missing[*]};" \
        "the tests that need them will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: no apt-get: cannot install ${missing[*]}; tests will skip" >&2
    exit 0
fi
echo "install-test-tools: installing ${missing[*]} from Debian's packages" >&2
# A policy-rc.d that answers 101 keeps the packages' services (prometheus, postgresql) from
# starting during the install; removed again afterwards if we created it.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then "${as_root[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq || echo "install-test-tools: apt-get update failed" >&2
if ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "install-test-tools: could not install ${missing[*]}; the tests that need them skip" >&2
fi
exit 0
