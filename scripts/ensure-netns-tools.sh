#!/usr/bin/env bash
# Install iptables (Debian package `iptables`) when it is missing: the transparent-mode e2e test
# (tests/e2e/test_transparent.py) redirects TCP to the gateway with an iptables REDIRECT rule
# inside network namespaces it creates. `ip netns` itself comes with iproute2.
# Idempotent: does nothing when iptables is present. Installs only as root (the test needs root
# anyway); otherwise, or without apt-get, it installs nothing and the test skips with a message.
set -euo pipefail

if command -v iptables >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-netns-tools: not root: iptables not installed; the transparent-mode test skips" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-netns-tools: no apt-get: iptables not installed; the transparent-mode test skips" >&2
    exit 0
fi
echo "ensure-netns-tools: installing iptables from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "ensure-netns-tools: apt-get update failed" >&2
if ! apt-get install -y -qq --no-install-recommends iptables >/dev/null; then
    echo "ensure-netns-tools: could not install iptables; the transparent-mode test skips" >&2
fi
exit 0
