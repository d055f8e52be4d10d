#!/usr/bin/env bash
# End-to-end load benchmark: mcp-gateway vs nginx, both as TLS reverse proxies in front of the same
# fast MCP upstream (`mcp-gateway sample-upstream`), plus the upstream hit directly as a baseline.
#
#   tests/bench/run.sh                      # 3 rounds x (direct, nginx, gateway), 32 conns, 10 s each
#   DURATION=5 ROUNDS=1 tests/bench/run.sh  # quick look
#
# Environment:
#   DURATION=10        measured seconds per run            WARMUP=2     warm-up seconds per run
#   CONNECTIONS=32     concurrent keep-alive connections   ROUNDS=3     rounds (nginx/gateway order alternates)
#   PROTO=http1        http1 | h2 (client<->proxy protocol; the proxies always talk HTTP/1.1 upstream,
#                      and the direct baseline is always HTTP/1.1)
#   STREAMS=1          concurrent streams per connection with PROTO=h2
#   TARGETS="direct nginx gateway"   subset to run
#   NGINX_WORKERS=auto nginx worker_processes (auto = one per core, like the gateway's tokio runtime)
#   SKIP_BUILD=1       use the existing target/release binaries
#   GATEWAY_EXTRA_YAML appended to the gateway's config (e.g. a `policies:` block, `audit: {disabled: true}`)
#   RESULTS=FILE       also copy the raw JSON lines (one per run) to FILE
#   KEEP_TMP=1         keep the scratch directory (configs, certs, logs)
#   GATEWAY_BIN, LOADGEN_BIN   override the binaries (default target/release/...)
#
# Only 127.0.0.1 is used. Every process the script starts is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
ROUNDS="${ROUNDS:-3}"
PROTO="${PROTO:-http1}"
STREAMS="${STREAMS:-1}"
TARGETS="${TARGETS:-direct nginx gateway}"
NGINX_WORKERS="${NGINX_WORKERS:-auto}"
TUNNEL_DOMAIN="tunnel.example.test"
ROUTE="bench"
HOST="$ROUTE.$TUNNEL_DOMAIN"

GATEWAY_BIN="${GATEWAY_BIN:-$ROOT/target/release/mcp-gateway}"
LOADGEN_BIN="${LOADGEN_BIN:-$ROOT/target/release/mcp-loadgen}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

for v in DURATION CONNECTIONS ROUNDS STREAMS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer (got '$WARMUP')"
case "$PROTO" in http1) H2_ARGS=() ;; h2) H2_ARGS=(--h2 --streams "$STREAMS") ;; *) die "PROTO must be http1 or h2" ;; esac

# ---------------------------------------------------------------------------------------------------
# Scratch dir + cleanup of everything we start.
WORK="$(mktemp -d /tmp/mcp-bench.XXXXXX)"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Bounded wait, then force.
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP_TMP:-0}" == 1 || $rc -ne 0 ]]; then
        log "scratch dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------
# Tools.
if ! command -v nginx >/dev/null 2>&1 && [[ -x /usr/sbin/nginx ]]; then PATH="$PATH:/usr/sbin"; fi
if ! command -v nginx >/dev/null 2>&1; then
    log "installing nginx (apt-get)"
    command -v apt-get >/dev/null 2>&1 || die "nginx not found and apt-get unavailable"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >"$WORK/apt.log" 2>&1 \
        || { tail -20 "$WORK/apt.log" >&2; die "apt-get install nginx failed"; }
    # The Debian package may start the distro's own nginx on :80; we don't use it, but stop it if it did.
    if [[ -f /run/nginx.pid ]]; then nginx -s quit 2>/dev/null || true; fi
fi
command -v openssl >/dev/null 2>&1 || log "openssl not found (only needed if 'mcp-gateway certs init' is unavailable)"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release -p mcp-gateway -p mcp-loadgen"
    (cd "$ROOT" && cargo build --release -p mcp-gateway -p mcp-loadgen)
fi
[[ -x "$LOADGEN_BIN" ]] || die "$LOADGEN_BIN missing"
[[ -x "$GATEWAY_BIN" ]] || die "$GATEWAY_BIN missing"

# ---------------------------------------------------------------------------------------------------
# Helpers.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Free for binding: nothing listening and no socket (e.g. an outgoing connection) using it locally.
port_free() {
    port_in_use "$1" && return 1
    if command -v ss >/dev/null 2>&1 && [[ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]]; then return 1; fi
    return 0
}
TAKEN_PORTS=" "
pick_port() {
    local p
    for _ in $(seq 1 200); do
        # Below the usual ephemeral range (32768+), so outgoing connections don't collide.
        p=$(( 20000 + RANDOM % 12000 ))
        if [[ "$TAKEN_PORTS" != *" $p "* ]] && port_free "$p"; then
            TAKEN_PORTS+="$p "
            echo "$p"
            return
        fi
    done
    die "no free port found"
}
wait_port() { # port pid name
    local port=$1 pid=$2 name=$3
    for _ in $(seq 1 150); do
        port_in_use "$port" && return 0
        kill -0 "$pid" 2>/dev/null || { tail -30 "$WORK/$name.log" >&2 || true; die "$name exited during start-up"; }
        sleep 0.1
    done
    tail -30 "$WORK/$name.log" >&2 || true
    die "$name did not listen on 127.0.0.1:$port within 15 s"
}
# Total CPU time (clock ticks) of a process and its direct children (nginx master + workers).
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
cpu_ticks() {
    local total=0 pid f
    for pid in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        f="/proc/$pid/stat"
        [[ -r "$f" ]] || continue
        # Fields 14/15 (utime/stime) counted after the ')' closing the command name.
        local rest; rest="$(sed 's/^.*) //' "$f")"
        read -r -a a <<<"$rest"
        total=$(( total + a[11] + a[12] ))
    done
    echo "$total"
}

# Busy CPU ticks of the whole machine from /proc/stat: process time (user+nice+system+steal) and
# interrupt time (irq+softirq: loopback network processing that no process is charged for).
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$9; exit}' /proc/stat 2>/dev/null || echo 0; }
irq_ticks() { awk '/^cpu /{print $7+$8; exit}' /proc/stat 2>/dev/null || echo 0; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

UPSTREAM_PORT="$(pick_port)"
GATEWAY_PORT="$(pick_port)"
NGINX_PORT="$(pick_port)"

# ---------------------------------------------------------------------------------------------------
# Certificates: prefer `mcp-gateway certs init`, fall back to openssl.
CERTS="$WORK/certs"
mkdir -p "$CERTS"
if "$GATEWAY_BIN" certs init --tunnel-domain "$TUNNEL_DOMAIN" --out "$CERTS" >"$WORK/certs.log" 2>&1 \
    && [[ -s "$CERTS/ca.crt" && -s "$CERTS/tls.crt" && -s "$CERTS/tls.key" ]]; then
    log "certificates: mcp-gateway certs init"
else
    log "certificates: openssl (mcp-gateway certs init unavailable: $(head -c 200 "$WORK/certs.log" | tr '\n' ' '))"
    rm -rf "$CERTS"; mkdir -p "$CERTS"
    (
        cd "$CERTS"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout ca.key -out ca.crt -subj "/CN=mcp-gateway bench CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout tls.key -out tls.csr -subj "/CN=*.$TUNNEL_DOMAIN"
        printf '%s\n' "subjectAltName=DNS:*.$TUNNEL_DOMAIN,DNS:$TUNNEL_DOMAIN" "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >ext.cnf
        openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out tls.crt
    ) >"$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log" >&2; die "openssl failed"; }
fi

# ---------------------------------------------------------------------------------------------------
# Request.
printf '%s' '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"refund policy"}}}' \
    >"$WORK/req.json"
HEADERS=(
    --header "Content-Type: application/json"
    --header "Accept: application/json, text/event-stream"
    --header "MCP-Protocol-Version: 2026-07-28"
    --header "Mcp-Method: tools/call"
    --header "Mcp-Name: search_docs"
)

# ---------------------------------------------------------------------------------------------------
# Upstream.
"$GATEWAY_BIN" sample-upstream --listen "127.0.0.1:$UPSTREAM_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!); UPSTREAM_PID=$!
wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" upstream
log "upstream (mcp-gateway sample-upstream) on 127.0.0.1:$UPSTREAM_PORT"

# Gateway.
if [[ " $TARGETS " == *" gateway "* ]]; then
    cat >"$WORK/gateway.yaml" <<EOF
listen_addr: "127.0.0.1:$GATEWAY_PORT"
log_level: warn
tunnel_domain: $TUNNEL_DOMAIN
tls:
  cert_file: "$CERTS/tls.crt"
  key_file: "$CERTS/tls.key"
routes:
  $ROUTE: "http://127.0.0.1:$UPSTREAM_PORT"
upstream:
  allowed_ips: ["127.0.0.0/8"]
EOF
    # Extra config for variants (policies, `audit: {disabled: true}`, …), appended verbatim.
    if [[ -n "${GATEWAY_EXTRA_YAML:-}" ]]; then printf '%s\n' "$GATEWAY_EXTRA_YAML" >>"$WORK/gateway.yaml"; fi
    # RUST_LOG would override log_level (per-request access logs would skew the result).
    env -u RUST_LOG MCP_GATEWAY_AUDIT_DIR="$WORK/audit" "$GATEWAY_BIN" serve --config "$WORK/gateway.yaml" >"$WORK/gateway.log" 2>&1 &
    PIDS+=($!); GATEWAY_PID=$!
    wait_port "$GATEWAY_PORT" "$GATEWAY_PID" gateway
    log "mcp-gateway on 127.0.0.1:$GATEWAY_PORT"
fi

# nginx.
if [[ " $TARGETS " == *" nginx "* ]]; then
    NGX="$WORK/nginx"
    mkdir -p "$NGX/tmp"
    nginx_version="$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')"
    # `http2 on;` exists since 1.25.1; older versions take `http2` on the listen line.
    if printf '%s\n%s\n' "1.25.1" "$nginx_version" | sort -V -C; then
        listen_h2=""; http2_directive="http2 on;"
    else
        listen_h2=" http2"; http2_directive=""
    fi
    cat >"$NGX/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
daemon off;
master_process on;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX/tmp/client_body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;

    upstream mcp_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl$listen_h2;
        $http2_directive
        server_name *.$TUNNEL_DOMAIN;
        ssl_certificate $CERTS/tls.crt;
        ssl_certificate_key $CERTS/tls.key;
        ssl_protocols TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 10m;
        # Default is 1000 requests per client connection; the gateway has no such cap.
        keepalive_requests 1000000;
        keepalive_timeout 75s;

        location / {
            proxy_pass http://mcp_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
EOF
    nginx -t -p "$NGX" -c "$NGX/nginx.conf" >"$WORK/nginx-t.log" 2>&1 || { cat "$WORK/nginx-t.log" >&2; die "nginx config test failed"; }
    nginx -p "$NGX" -c "$NGX/nginx.conf" >"$WORK/nginx.log" 2>&1 &
    PIDS+=($!); NGINX_PID=$!
    wait_port "$NGINX_PORT" "$NGINX_PID" nginx
    log "nginx $nginx_version on 127.0.0.1:$NGINX_PORT (worker_processes $NGINX_WORKERS)"
fi

# ---------------------------------------------------------------------------------------------------
# Smoke test: one request through each target, shown verbatim, before measuring.
smoke() { # name port tls(0|1)
    local name=$1 port=$2 tls=$3 out url
    local curl_args=("$CURL_PROTO" -sS --max-time 5 -o "$WORK/smoke-$name.body" -w '%{http_code} HTTP/%{http_version}' -X POST
        --data-binary "@$WORK/req.json"
        -H "Content-Type: application/json" -H "Accept: application/json, text/event-stream"
        -H "MCP-Protocol-Version: 2026-07-28" -H "Mcp-Method: tools/call" -H "Mcp-Name: search_docs")
    if [[ $tls == 1 ]]; then
        curl_args+=(--cacert "$CERTS/ca.crt" --resolve "$HOST:$port:127.0.0.1")
        url="https://$HOST:$port/mcp"
    else
        url="http://127.0.0.1:$port/mcp"
    fi
    out="$(curl "${curl_args[@]}" "$url" 2>&1)" || { log "smoke $name: curl failed: $out"; return 1; }
    log "smoke $name: $out, body: $(head -c 300 "$WORK/smoke-$name.body")"
    [[ "$out" == 2* ]]
}
if [[ "$PROTO" == h2 ]]; then CURL_PROTO=--http2; else CURL_PROTO=--http1.1; fi
if command -v curl >/dev/null 2>&1; then
    for t in $TARGETS; do
        case $t in
            direct) CURL_PROTO=--http1.1 smoke direct "$UPSTREAM_PORT" 0 ;;
            nginx) smoke nginx "$NGINX_PORT" 1 ;;
            gateway) smoke gateway "$GATEWAY_PORT" 1 ;;
            *) die "unknown target '$t' (direct, nginx, gateway)" ;;
        esac || die "smoke test through $t failed (see above; logs in $WORK)"
    done
fi

# ---------------------------------------------------------------------------------------------------
# Measurement.
RESULTS_FILE="$WORK/results.jsonl"
: >"$RESULTS_FILE"
RUN_TIMEOUT=$(( DURATION + WARMUP + 30 ))

run_one() { # target round
    local target=$1 round=$2 args pid="" t0 t1 line rc
    case $target in
        # The baseline always speaks plain HTTP/1.1, like the proxies do towards the upstream.
        direct) args=(--plain-http --connect "127.0.0.1:$UPSTREAM_PORT" --host "127.0.0.1:$UPSTREAM_PORT") ;;
        nginx) args=(--connect "127.0.0.1:$NGINX_PORT" --host "$HOST" --ca "$CERTS/ca.crt" "${H2_ARGS[@]}"); pid=$NGINX_PID ;;
        gateway) args=(--connect "127.0.0.1:$GATEWAY_PORT" --host "$HOST" --ca "$CERTS/ca.crt" "${H2_ARGS[@]}"); pid=$GATEWAY_PID ;;
    esac
    t0=0; if [[ -n "$pid" ]]; then t0=$(cpu_ticks "$pid"); fi
    local u0; u0=$(cpu_ticks "$UPSTREAM_PID")
    local m0; m0=$(machine_ticks)
    local q0; q0=$(irq_ticks)
    local w0; w0=$(now_ms)
    # Mid-run sample of this proxy's established TCP connections to the upstream (shows pooling);
    # matched by owning pid so the other proxy's idle keep-alive pool is not counted.
    (
        sleep $(( WARMUP + DURATION / 2 ))
        if [[ -n "$pid" ]] && command -v ss >/dev/null 2>&1; then
            pat="$(for p in "$pid" $(pgrep -P "$pid" 2>/dev/null); do printf 'pid=%s,|' "$p"; done)"
            ss -Htnp state established "( dport = :$UPSTREAM_PORT )" 2>/dev/null | grep -cE "${pat%|}" || true
        else
            echo -1
        fi >"$WORK/upconns-$target-$round"
    ) &
    local sampler=$!
    set +e
    line="$(timeout --kill-after=5 "$RUN_TIMEOUT" "$LOADGEN_BIN" "${args[@]}" \
        --path /mcp --body-file "$WORK/req.json" "${HEADERS[@]}" \
        --connections "$CONNECTIONS" --duration "${DURATION}s" --warmup "${WARMUP}s" \
        --label "$target" 2>"$WORK/loadgen-$target-$round.err")"
    rc=$?
    wait "$sampler" 2>/dev/null
    set -e
    local upconns; upconns="$(cat "$WORK/upconns-$target-$round" 2>/dev/null || echo -1)"
    t1=0; if [[ -n "$pid" ]]; then t1=$(cpu_ticks "$pid"); fi
    local u1; u1=$(cpu_ticks "$UPSTREAM_PID")
    local m1; m1=$(machine_ticks)
    local q1; q1=$(irq_ticks)
    local w1; w1=$(now_ms)
    if [[ -z "$line" ]]; then
        cat "$WORK/loadgen-$target-$round.err" >&2
        die "load generator produced no result for $target (exit $rc)"
    fi
    # Append round, proxy CPU (ms) and upstream CPU (ms) used during the run (warm-up included).
    line="${line%\}},\"round\":$round,\"proxy_cpu_ms\":$(( (t1 - t0) * 1000 / CLK_TCK )),\"upstream_cpu_ms\":$(( (u1 - u0) * 1000 / CLK_TCK )),\"upstream_conns\":$upconns,\"machine_cpu_ms\":$(( (m1 - m0) * 1000 / CLK_TCK )),\"irq_cpu_ms\":$(( (q1 - q0) * 1000 / CLK_TCK )),\"wall_ms\":$(( w1 - w0 )),\"exit\":$rc}"
    echo "$line" >>"$RESULTS_FILE"
    log "round $round $target: $(awk -v l="$line" 'BEGIN{
        n=split("rps p50_us p99_us errors reconnects proxy_cpu_ms upstream_conns",k," ");
        for(i=1;i<=n;i++){ if (match(l, "\"" k[i] "\":[-0-9.]+")) { s=substr(l,RSTART,RLENGTH); sub(/^"[^"]*":/,"",s); printf "%s=%s ", k[i], s } } }')"
    if [[ $rc -ne 0 ]]; then
        sed 's/^/    /' "$WORK/loadgen-$target-$round.err" >&2
        FAILED+=("$target/round$round")
    fi
}

FAILED=()
log "running: targets [$TARGETS], $ROUNDS round(s), $CONNECTIONS connections, ${WARMUP}s warm-up + ${DURATION}s each, $PROTO"
for round in $(seq 1 "$ROUNDS"); do
    # Alternate nginx/gateway order so drift in machine noise hits both equally.
    if (( round % 2 == 1 )); then order="direct nginx gateway"; else order="direct gateway nginx"; fi
    for t in $order; do
        if [[ " $TARGETS " == *" $t "* ]]; then run_one "$t" "$round"; fi
    done
done

if [[ -n "${RESULTS:-}" ]]; then cp "$RESULTS_FILE" "$RESULTS"; fi

# ---------------------------------------------------------------------------------------------------
# Report: medians over rounds.
awk -v targets="$TARGETS" -v conns="$CONNECTIONS" -v dur="$DURATION" -v rounds="$ROUNDS" -v proto="$PROTO" \
    -v nproc="$(nproc 2>/dev/null || echo '?')" -v nworkers="$NGINX_WORKERS" '
function get(l, k,   s) {
    if (match(l, "\"" k "\":(\"[^\"]*\"|[-0-9.a-z]+)")) { s = substr(l, RSTART, RLENGTH); sub(/^"[^"]*":/, "", s); gsub(/"/, "", s); return s }
    return ""
}
function median(t, k,   n, i, j, a, tmp) {
    n = cnt[t]; if (n == 0) return 0
    for (i = 1; i <= n; i++) a[i] = val[t, k, i] + 0
    for (i = 2; i <= n; i++) { tmp = a[i]; for (j = i - 1; j >= 1 && a[j] > tmp; j--) a[j + 1] = a[j]; a[j + 1] = tmp }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
    t = get($0, "label"); i = ++cnt[t]
    split("rps p50_us p90_us p99_us max_us errors warmup_errors reconnects proxy_cpu_ms avg_resp_bytes requests upstream_conns", ks, " ")
    for (x in ks) val[t, ks[x], i] = get($0, ks[x])
    allreq = get($0, "requests") + get($0, "warmup_requests")
    val[t, "up_cpu_us_per_req", i] = (allreq > 0) ? get($0, "upstream_cpu_ms") * 1000.0 / allreq : 0
    wall = get($0, "wall_ms") + 0
    if (wall > 0) {
        pc = get($0, "proxy_cpu_ms") / wall; uc = get($0, "upstream_cpu_ms") / wall; lc = get($0, "loadgen_cpu_ms") / wall
        oc = get($0, "machine_cpu_ms") / wall - pc - uc - lc; if (oc < 0) oc = 0
        val[t, "cores_proxy", i] = pc; val[t, "cores_up", i] = uc; val[t, "cores_lg", i] = lc; val[t, "cores_other", i] = oc
        val[t, "cores_irq", i] = get($0, "irq_cpu_ms") / wall
    }
    err[t] += get($0, "errors") + get($0, "warmup_errors")
    rpslist[t] = rpslist[t] (i > 1 ? " / " : "") sprintf("%.0f", get($0, "rps"))
    val[t, "cpu_us_per_req", i] = (allreq > 0) ? get($0, "proxy_cpu_ms") * 1000.0 / allreq : 0
}
END {
    printf "\n## mcp-gateway vs nginx: TLS reverse proxy in front of the same MCP upstream\n\n"
    printf "%s rounds x %s s (after warm-up), %s keep-alive connections, client protocol %s, POST /mcp tools/call.\n", rounds, dur, conns, proto
    printf "Medians over rounds. Load generator, proxy and upstream all share this machine (%s CPUs), so absolute\n", nproc
    printf "numbers are a floor; the gateway/nginx ratio is the meaningful figure. nginx worker_processes=%s.\n\n", nworkers
    printf "| target | RPS | p50 (µs) | p90 (µs) | p99 (µs) | max (µs) | proxy CPU µs/req | upstream CPU µs/req | upstream conns | resp bytes | errors | RPS per round | busy cores proxy/upstream/loadgen/irq/other |\n"
    printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
    n = split(targets, ts, " ")
    for (i = 1; i <= n; i++) {
        t = ts[i]; if (!cnt[t]) continue
        name = (t == "direct") ? "upstream direct (plain HTTP)" : (t == "nginx") ? "nginx (TLS)" : "mcp-gateway (TLS)"
        cpu = (t == "direct") ? "-" : sprintf("%.1f", median(t, "cpu_us_per_req"))
        conns = (t == "direct") ? "-" : sprintf("%.0f", median(t, "upstream_conns"))
        cores = sprintf("%.2f / %.2f / %.2f / %.2f / %.2f", median(t, "cores_proxy"), median(t, "cores_up"), median(t, "cores_lg"),
            median(t, "cores_irq"), median(t, "cores_other"))
        printf "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %.1f | %s | %.0f | %d | %s | %s |\n", name, median(t, "rps"), median(t, "p50_us"),
            median(t, "p90_us"), median(t, "p99_us"), median(t, "max_us"), cpu, median(t, "up_cpu_us_per_req"),
            conns, median(t, "avg_resp_bytes"), err[t], rpslist[t], cores
    }
    printf "\n"
    if (cnt["gateway"] && cnt["nginx"] && median("nginx", "rps") > 0)
        printf "- gateway / nginx RPS: **%.2f**\n", median("gateway", "rps") / median("nginx", "rps")
    if (cnt["direct"]) {
        for (i = 1; i <= n; i++) {
            t = ts[i]; if (t == "direct" || !cnt[t]) continue
            printf "- %s added latency over direct: p50 +%.0f µs, p99 +%.0f µs\n", t,
                median(t, "p50_us") - median("direct", "p50_us"), median(t, "p99_us") - median("direct", "p99_us")
        }
    }
    printf "- CPU µs/req = CPU time of the proxy process(es) / the upstream during the run (warm-up included) / requests served.\n"
    printf "- upstream conns = the proxy'"'"'s established TCP connections to the upstream, sampled mid-run (pooling).\n"
    printf "- busy cores = average CPU cores used during the run by each party; irq = interrupt/softirq time (loopback\n"
    printf "  networking not charged to any process); \"other\" = every other process (e.g. a compiler): if it is\n"
    printf "  not ~0 the run was disturbed.\n"
}' "$RESULTS_FILE"

if (( ${#FAILED[@]} > 0 )); then
    log "runs with errors: ${FAILED[*]} (raw results: $RESULTS_FILE)"
    KEEP_TMP=1
    exit 1
fi
