#!/usr/bin/env bash
# Install the Debian packages that the test and benchmark servers (servers/*.py) run on.
# Idempotent: does nothing when every package is already installed; runs `apt-get update`
# only when something is missing. Run as root; never prompts.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
    openssl redis-server
    # Ceph RGW (servers/ceph_rgw.py)
    ceph-mon ceph-osd radosgw ceph-common
    # memcached: Swift's tempauth keeps its tokens there (servers/swift_s3api.py)
    memcached
    # OpenStack Swift 2.30 with s3api (servers/swift_s3api.py); runs on /usr/bin/python3
    swift swift-proxy swift-object swift-container swift-account python3-swift
    # redis-py for Swift's interpreter: the s3s3 proxy middleware (s3s3.queue.swift_middleware)
    # writes to Redis from inside the proxy, which runs on Debian's python3, not the venv
    python3-redis
    # Prometheus, promtool and the Pushgateway: the metrics tests scrape s3s3listen, receive
    # s3s3bucket's push, and CI checks the alert rules
    prometheus prometheus-pushgateway
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-debian.sh: all ${#packages[@]} packages already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-debian.sh: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

echo "install-debian.sh: installing ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
