#!/usr/bin/env bash
# Installs the tools the full test suite uses and a fresh machine lacks: Debian's
# prometheus (promtool), dnsmasq, etcd, chromium (headless screenshots). Idempotent; a
# tool already on PATH is not reinstalled. Needs root (or sudo) and Debian's apt.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq)
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ ${#need[@]} -eq 0 ]; then
    echo "all test tools present"
    exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Installing does not start dnsmasq or etcd as services that matter here: tests start
# their own instances on loopback ports. Stop any the package started.
$sudo systemctl stop dnsmasq etcd 2>/dev/null || true
# The downloaded .deb files are not needed once installed; the build wants the disk.
$sudo apt-get clean
