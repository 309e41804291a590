#!/usr/bin/env bash
# xsrouter benchmark: xsrouter against nginx (reverse proxy) and @sap/approuter on this machine.
# Writes docs/benchmarks.md. See README "Benchmarks" for what it measures.
#
#   bench/run.sh            # full run (~15-20 min)
#   bench/run.sh --quick    # validation run (~2-3 min): short durations, two concurrencies
#
# Parameters (environment):
#   BENCH_DURATION     seconds per measured point (15; quick: 3)
#   BENCH_WARMUP       seconds of warm-up before each point (3; quick: 1)
#   BENCH_CONCURRENCY  connections, space-separated ("1 16 64 256"; quick: "16 256")
#   BENCH_SCENARIOS    subset of: plain mtls token exchange big tls-keepalive tls-newconn
#   BENCH_PROXIES      subset of: xsrouter nginx approuter
#   BENCH_OUT          report file (docs/benchmarks.md)
#   BENCH_NOTE         a line put at the top of the report (quick runs mark themselves)
#   BENCH_PORT_BASE    first of the loopback ports used (18000)
#   BENCH_APPROUTER_DIR where @sap/approuter is (or gets) installed (/tmp/arref)
#   BENCH_KEEP=1       keep the work directory (configs, logs) after the run
#   BENCH_SKIP_BUILD=1 use the release binaries already built
#   (a section of the report from the line `<!-- kept across runs -->` on is carried over)
#   BENCH_XSROUTER_LOG_LEVEL  xsrouter's LOG_LEVEL (info: one access-log line per request, as
#                      nginx writes its access log; warn: no access log)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  DURATION=${BENCH_DURATION:-3}; WARMUP=${BENCH_WARMUP:-1}; CONCURRENCY=${BENCH_CONCURRENCY:-"16 256"}
  NOTE=${BENCH_NOTE:-"Quick validation run (\`bench/run.sh --quick\`): short points, few concurrencies — check the machinery, do not quote these numbers."}
else
  DURATION=${BENCH_DURATION:-15}; WARMUP=${BENCH_WARMUP:-3}; CONCURRENCY=${BENCH_CONCURRENCY:-"1 16 64 256"}
  NOTE=${BENCH_NOTE:-}
fi
SCENARIOS=${BENCH_SCENARIOS:-"plain mtls token exchange big tls-keepalive tls-newconn"}
PROXIES=${BENCH_PROXIES:-"xsrouter nginx approuter"}
OUT=${BENCH_OUT:-docs/benchmarks.md}
BASE=${BENCH_PORT_BASE:-18000}
ARREF=${BENCH_APPROUTER_DIR:-/tmp/arref}

P_PROXY=$BASE              # proxies, plain HTTP
P_PROXY_TLS=$((BASE + 1))  # proxies, HTTPS with client certificates
P_BACKEND=$((BASE + 80))   # backend, plain HTTP
P_BACKEND_TLS=$((BASE + 443)) # backend, HTTPS requiring a client certificate
P_TOKENS=$((BASE + 90))    # token service

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
has() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# Tools
need=()
has nginx || need+=(nginx-light)
has curl || need+=(curl)
has openssl || need+=(openssl)
has taskset || need+=(util-linux)
has pgrep || need+=(procps)
has wrk || need+=(wrk)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}: run as root or install them"
  apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; then
    # nginx-light is gone in newer Debian releases; without wrk, bench_tools drives the load.
    for pkg in "${need[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 ||
        { [ "$pkg" = nginx-light ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; } || true
    done
  fi
fi
has nginx || die "nginx is not installed"
if has wrk; then LOADGEN=wrk; else LOADGEN=bench_tools; log "wrk is not available: bench_tools drives the plain HTTP scenarios too"; fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building xsrouter and bench_tools (release)"
  cargo build --release --quiet --bin xsrouter --example bench_tools
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-$ROOT/target}
XSROUTER=$TARGET_DIR/release/xsrouter
TOOLS=$TARGET_DIR/release/examples/bench_tools
[ -x "$XSROUTER" ] && [ -x "$TOOLS" ] || die "release binaries not found under $TARGET_DIR"

APPROUTER_NOTE=""
case " $PROXIES " in *" approuter "*)
  if has node && has npm; then
    if [ ! -f "$ARREF/node_modules/@sap/approuter/approuter.js" ]; then
      log "installing @sap/approuter into $ARREF"
      mkdir -p "$ARREF"
      printf '{"dependencies":{"@sap/approuter":"23.0.0"},"overrides":{"@sap/logging":"9.2.2"}}' > "$ARREF/package.json"
      (cd "$ARREF" && npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1) || true
    fi
  fi
  if ! has node || [ ! -f "$ARREF/node_modules/@sap/approuter/approuter.js" ]; then
    APPROUTER_NOTE="approuter was skipped: Node.js or @sap/approuter is not available."
    PROXIES=$(echo " $PROXIES " | sed 's/ approuter / /')
  fi
;; esac

# Pinning: the proxy gets CPU 0, the load generator, backend and token service the rest.
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ] && has taskset; then
  PROXY_CPUS=0; LOAD_CPUS=1; [ "$NCPU" -gt 2 ] && LOAD_CPUS=1-$((NCPU - 1))
  PIN_PROXY=(taskset -c "$PROXY_CPUS"); PIN_LOAD=(taskset -c "$LOAD_CPUS")
  PINNING="proxy on CPU $PROXY_CPUS; load generator, backend and token service on CPU $LOAD_CPUS"
else
  PIN_PROXY=(); PIN_LOAD=()
  PINNING="no pinning ($NCPU CPU)"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# ---------------------------------------------------------------------------------------------
# Work directory, certificates, files
W=$(mktemp -d /tmp/proxybench.XXXXXX)
chmod 755 "$W"
# Frozen copies: a rebuild during the run changes nothing, and `pkill xsrouter` elsewhere misses them.
mkdir -p "$W/bin"
cp "$XSROUTER" "$W/bin/xsr"
cp "$TOOLS" "$W/bin/bench_tools"
XSROUTER=$W/bin/xsr
TOOLS=$W/bin/bench_tools
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $P_PROXY $P_PROXY_TLS $P_BACKEND $P_BACKEND_TLS $P_TOKENS; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use (set BENCH_PORT_BASE)"
  fi
done

log "certificates and files in $W"
mkdir -p "$W/pki" "$W/www"
(
  cd "$W/pki"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=xsrouter bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  for leaf in server client; do
    openssl req "${ec[@]}" -keyout $leaf.key -out $leaf.csr -subj "/CN=bench-$leaf" 2>/dev/null
  done
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > client.ext
  for leaf in server client; do
    openssl x509 -req -in $leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile $leaf.ext -out $leaf.pem 2>/dev/null
  done
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out token-key.pem 2>/dev/null
  chmod 644 ./*
)
# A small fixed body and a 1 MiB file.
printf '{"service":"xsrouter-bench","status":"ok","message":"a small fixed body from the static backend"}\n' > "$W/www/small.json"
head -c 1048576 /dev/urandom > "$W/www/big.bin"
SMALL_BYTES=$(wc -c < "$W/www/small.json")

# ---------------------------------------------------------------------------------------------
# Backend: nginx, one worker, plain HTTP and HTTPS requiring a client certificate
mkdir -p "$W/backend"
cat > "$W/backend/nginx.conf" <<EOF
worker_processes 1;
pid $W/backend/nginx.pid;
error_log $W/backend/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 300s; keepalive_requests 10000000;
  client_body_temp_path $W/backend/tmp; proxy_temp_path $W/backend/tmp;
  fastcgi_temp_path $W/backend/tmp; uwsgi_temp_path $W/backend/tmp; scgi_temp_path $W/backend/tmp;
  default_type application/octet-stream;
  types { application/json json; }
  server {
    listen 127.0.0.1:$P_BACKEND reuseport backlog=4096;
    root $W/www;
  }
  server {
    listen 127.0.0.1:$P_BACKEND_TLS ssl reuseport backlog=4096;
    ssl_certificate $W/pki/server.pem; ssl_certificate_key $W/pki/server.key;
    ssl_client_certificate $W/pki/ca.pem; ssl_verify_client on;
    ssl_session_cache shared:backend:10m;
    root $W/www;
  }
}
EOF
mkdir -p "$W/backend/tmp"
"${PIN_LOAD[@]}" nginx -p "$W/backend" -c "$W/backend/nginx.conf" -g 'daemon off; user root;' 2>>"$W/backend/error.log" &
PIDS+=($!)

# Token service (XSUAA-compatible: /oauth/token, /token_keys).
"${PIN_LOAD[@]}" "$TOOLS" token-service --port "$P_TOKENS" --key "$W/pki/token-key.pem" 2>"$W/tokens.log" &
PIDS+=($!)

wait_port() { # port [pid]
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}
wait_port $P_BACKEND && wait_port $P_BACKEND_TLS || die "backend did not start: $(cat "$W/backend/error.log")"
wait_port $P_TOKENS || die "token service did not start: $(cat "$W/tokens.log")"
curl -sf "http://127.0.0.1:$P_BACKEND/small.json" >/dev/null || die "backend does not serve small.json"
curl -sf --cacert "$W/pki/ca.pem" --cert "$W/pki/client.pem" --key "$W/pki/client.key" \
  "https://127.0.0.1:$P_BACKEND_TLS/small.json" >/dev/null || die "mTLS backend does not answer"

USER_TOKEN=$("$TOOLS" user-token --key "$W/pki/token-key.pem" --issuer "http://127.0.0.1:$P_TOKENS" --client-id bench-app)

# ---------------------------------------------------------------------------------------------
# Proxy configurations: the same routes everywhere
#   /plain/*    -> backend over HTTP             /mtls/*     -> backend over mTLS
#   /token/*    -> backend + client_credentials  /exchange/* -> backend + jwt-bearer (user token)

mkdir -p "$W/xsrouter"
cat > "$W/xsrouter/xs-app.json" <<'EOF'
{
  "authenticationMethod": "route",
  "routes": [
    {"source": "^/plain/(.*)$", "target": "/$1", "destination": "plain", "authenticationType": "none", "csrfProtection": false},
    {"source": "^/mtls/(.*)$", "target": "/$1", "destination": "mtls", "authenticationType": "none", "csrfProtection": false},
    {"source": "^/token/(.*)$", "target": "/$1", "destination": "token", "authenticationType": "none", "csrfProtection": false},
    {"source": "^/exchange/(.*)$", "target": "/$1", "destination": "exchange", "authenticationType": "xsuaa", "csrfProtection": false}
  ]
}
EOF
json_pem() { awk '{printf "%s\\n", $0}' "$1"; }
XS_DESTINATIONS='[
 {"name":"plain","url":"http://127.0.0.1:'$P_BACKEND'"},
 {"name":"mtls","url":"https://127.0.0.1:'$P_BACKEND_TLS'","forwardAuthCertificates":true},
 {"name":"token","url":"http://127.0.0.1:'$P_BACKEND'","authentication":"OAuth2ClientCredentials","tokenServiceURL":"http://127.0.0.1:'$P_TOKENS'/oauth/token","clientId":"bench-cc","clientSecret":"bench-secret"},
 {"name":"exchange","url":"http://127.0.0.1:'$P_BACKEND'","authentication":"OAuth2JWTBearer","tokenServiceURL":"http://127.0.0.1:'$P_TOKENS'/oauth/token","clientId":"bench-jb","clientSecret":"bench-secret"}
]'
XS_VCAP='{"xsuaa":[{"name":"bench-xsuaa","label":"xsuaa","tags":["xsuaa"],"credentials":{"clientid":"bench-app","xsappname":"bench-app","url":"http://127.0.0.1:'$P_TOKENS'","certurl":"http://127.0.0.1:'$P_TOKENS'","uaadomain":"127.0.0.1","credential-type":"x509","certificate":"'$(json_pem "$W/pki/client.pem")'","key":"'$(json_pem "$W/pki/client.key")'"}}]}'

mkdir -p "$W/approuter"
cat > "$W/approuter/xs-app.json" <<'EOF'
{
  "authenticationMethod": "none",
  "routes": [
    {"source": "^/plain/(.*)$", "target": "/$1", "destination": "plain", "csrfProtection": false}
  ]
}
EOF
AR_DESTINATIONS='[{"name":"plain","url":"http://127.0.0.1:'$P_BACKEND'"}]'

mkdir -p "$W/nginx/tmp"
cat > "$W/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 16384; }
http {
  access_log $W/nginx/access.log;
  sendfile on; tcp_nodelay on;
  keepalive_timeout 300s; keepalive_requests 10000000;
  client_body_temp_path $W/nginx/tmp; proxy_temp_path $W/nginx/tmp;
  fastcgi_temp_path $W/nginx/tmp; uwsgi_temp_path $W/nginx/tmp; scgi_temp_path $W/nginx/tmp;
  upstream plain { server 127.0.0.1:$P_BACKEND; keepalive 512; keepalive_requests 10000000; keepalive_timeout 300s; }
  upstream mtls { server 127.0.0.1:$P_BACKEND_TLS; keepalive 512; keepalive_requests 10000000; keepalive_timeout 300s; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto \$scheme;
  proxy_set_header X-Forwarded-Host \$host;
  proxy_max_temp_file_size 0;
  proxy_ssl_certificate $W/pki/client.pem; proxy_ssl_certificate_key $W/pki/client.key;
  proxy_ssl_trusted_certificate $W/pki/ca.pem; proxy_ssl_verify on; proxy_ssl_name localhost;
  proxy_ssl_session_reuse on;
  server {
    listen 127.0.0.1:$P_PROXY;
    location /plain/ { proxy_pass http://plain/; }
    location /mtls/ { proxy_pass https://mtls/; }
  }
  server {
    listen 127.0.0.1:$P_PROXY_TLS ssl;
    ssl_certificate $W/pki/server.pem; ssl_certificate_key $W/pki/server.key;
    ssl_client_certificate $W/pki/ca.pem; ssl_verify_client on;
    ssl_session_cache off; ssl_session_tickets off;
    location /plain/ { proxy_pass http://plain/; }
  }
}
EOF

# ---------------------------------------------------------------------------------------------
# Measuring
RESULTS=$W/results.tsv
IDLE=$W/idle.tsv
printf 'scenario\tproxy\tconnections\trps\tp50_ms\tp99_ms\tp999_ms\terrors\trequests\tcpu_s_per_10k\tpeak_rss_kib\n' > "$RESULTS"
printf 'proxy\tidle_rss_kib\n' > "$IDLE"
NOTES=$W/notes.txt
: > "$NOTES"
[ -n "$APPROUTER_NOTE" ] && echo "$APPROUTER_NOTE" >> "$NOTES"
CLK_TCK=$(getconf CLK_TCK)

cat > "$W/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format('{"requests":%d,"seconds":%f,"rps":%f,"p50_ms":%f,"p99_ms":%f,"p999_ms":%f,"errors":%d,"bytes":%d}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout, summary.bytes))
end
EOF

CURRENT_LOG=/dev/null
PROXY_PIDS=()   # processes of the proxy under test (nginx: master and worker)
proc_pids() {
  local all=() p
  for p in "${PROXY_PIDS[@]}"; do
    all+=("$p")
    all+=($(pgrep -P "$p" 2>/dev/null || true))
  done
  echo "${all[@]}"
}
cpu_ticks() {
  local total=0 p v
  for p in $(proc_pids); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || true
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
status_kib() { # field (VmHWM, VmRSS): summed over the proxy's processes
  local total=0 p v
  for p in $(proc_pids); do
    v=$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
reset_hwm() {
  local p
  for p in $(proc_pids); do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done
}
json_field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<< "$2" | tr -d '"'; }

# drive URL CONNECTIONS SECONDS [tls|tls-new] [header]: prints the load generator's JSON line.
drive() {
  local url=$1 c=$2 d=$3 mode=${4:-} header=${5:-}
  case "$mode" in
    tls|tls-new)
      local extra=()
      [ "$mode" = tls-new ] && extra+=(--new-conn)
      "${PIN_LOAD[@]}" "$TOOLS" load --url "$url" -c "$c" -d "$d" --ca "$W/pki/ca.pem" \
        --cert "$W/pki/client.pem" --key "$W/pki/client.key" "${extra[@]}"
      ;;
    *)
      if [ "$LOADGEN" = wrk ]; then
        local h=()
        [ -n "$header" ] && h=(-H "$header")
        "${PIN_LOAD[@]}" wrk -t1 -c"$c" -d"${d}s" --timeout 10s "${h[@]}" -s "$W/report.lua" "$url" | tail -n 1
      else
        "${PIN_LOAD[@]}" "$TOOLS" load --url "$url" -c "$c" -d "$d" ${header:+--header "$header"}
      fi
      ;;
  esac
}

# check URL MODE [header]: one request must answer 200 with the expected body size.
check() {
  local url=$1 mode=$2 header=${3:-} expect=$SMALL_BYTES args=(-s -o /dev/null -w '%{http_code} %{size_download}')
  case "$url" in *big.bin) expect=1048576 ;; esac
  case "$mode" in tls*) args+=(--cacert "$W/pki/ca.pem" --cert "$W/pki/client.pem" --key "$W/pki/client.key") ;; esac
  [ -n "$header" ] && args+=(-H "$header")
  local got
  got=$(curl "${args[@]}" "$url" || true)
  [ "$got" = "200 $expect" ] && return 0
  log "check failed for $url: got '$got', expected '200 $expect'"
  return 1
}

# point SCENARIO PROXY URL MODE [header]
run_scenario() {
  local scenario=$1 proxy=$2 url=$3 mode=$4 header=${5:-}
  local c issued_before
  issued_before=$(grep -c 'issued token' "$W/tokens.log" || true)
  if ! check "$url" "$mode" "$header"; then
    echo "$scenario/$proxy: the check request failed; scenario skipped (see the proxy log)." >> "$NOTES"
    return 0
  fi
  for c in $CONCURRENCY; do
    drive "$url" "$c" "$WARMUP" "$mode" "$header" >/dev/null || true
    reset_hwm
    local before after out
    before=$(cpu_ticks)
    out=$(drive "$url" "$c" "$DURATION" "$mode" "$header" || true)
    after=$(cpu_ticks)
    local requests rps cpu hwm
    requests=$(json_field requests "$out"); requests=${requests:-0}
    rps=$(json_field rps "$out")
    hwm=$(status_kib VmHWM)
    cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { if (n > 0) printf "%.3f", t / hz / n * 10000; else print "" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$proxy" "$c" "${rps:-}" \
      "$(json_field p50_ms "$out")" "$(json_field p99_ms "$out")" "$(json_field p999_ms "$out")" \
      "$(json_field errors "$out")" "$requests" "$cpu" "$hwm" >> "$RESULTS"
    log "$scenario $proxy c=$c: ${rps:-?} req/s, p99 $(json_field p99_ms "$out") ms, errors $(json_field errors "$out")${out:+$(sed -n 's/.*"unfinished":\([0-9]*\).*/, unfinished at the end \1/p' <<< "$out")}, cpu/10k ${cpu:-?} s, peak RSS $((hwm / 1024)) MiB"
    [ -z "$out" ] && log "load generator printed nothing for $url"
    if ! kill -0 "${PROXY_PIDS[0]}" 2>/dev/null; then
      log "$proxy exited during $scenario:"; tail -n 5 "$CURRENT_LOG" >&2
      echo "$scenario/$proxy: the proxy exited during the run; later points are missing." >> "$NOTES"
      return 0
    fi
  done
  case "$scenario" in token|exchange)
    echo "$scenario/$proxy: the token service issued $(( $(grep -c 'issued token' "$W/tokens.log" || true) - issued_before )) tokens from its check request to its last point (every other request was served from the cache)." >> "$NOTES" ;;
  esac
}

want() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

start_proxy() { # name, then the command; sets PROXY_PIDS, waits for the port
  local name=$1; shift
  "${PIN_PROXY[@]}" "$@" >> "$W/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  PROXY_PIDS=("$pid")
  CURRENT_LOG=$W/$name.log
  local port=$P_PROXY
  [ "$name" = xsrouter-tls ] && port=$P_PROXY_TLS
  wait_port "$port" "$pid" || { log "$name did not start:"; tail -n 20 "$W/$name.log" >&2; return 1; }
  sleep 0.5
  grep -q "^$name	" "$IDLE" || printf '%s\t%s\n' "$name" "$(status_kib VmRSS)" >> "$IDLE"
}
stop_proxy() {
  local p
  for p in "${PROXY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PROXY_PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  PROXY_PIDS=()
  sleep 0.5
}

xsrouter_env=(env -u VCAP_APPLICATION PORT="$P_PROXY" destinations="$XS_DESTINATIONS" VCAP_SERVICES="$XS_VCAP"
  XS_CACERT_PATH="$W/pki/ca.pem" LOG_LEVEL="${BENCH_XSROUTER_LOG_LEVEL:-info}" XSROUTER_SHUTDOWN_TIMEOUT=2)
H="http://127.0.0.1:$P_PROXY"
S="https://127.0.0.1:$P_PROXY_TLS"
SECONDS=0

# Every scenario gets a fresh proxy process, so its peak RSS is its own.
start_instance() { # xsrouter | xsrouter-tls | nginx | approuter
  case "$1" in
    xsrouter) start_proxy xsrouter "${xsrouter_env[@]}" "$XSROUTER" -w "$W/xsrouter" ;;
    xsrouter-tls)
      start_proxy xsrouter-tls "${xsrouter_env[@]}" PORT="$P_PROXY_TLS" XSROUTER_TLS_CERT="$W/pki/server.pem" \
        XSROUTER_TLS_KEY="$W/pki/server.key" XSROUTER_CLIENT_CERT_MODE=require XSROUTER_CLIENT_CA="$W/pki/ca.pem" \
        "$XSROUTER" -w "$W/xsrouter" ;;
    nginx) start_proxy nginx nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" -g 'daemon off; user root;' ;;
    approuter)
      start_proxy approuter env -u VCAP_SERVICES -u VCAP_APPLICATION PORT="$P_PROXY" destinations="$AR_DESTINATIONS" \
        node "$ARREF/node_modules/@sap/approuter/approuter.js" -w "$W/approuter" ;;
  esac
}
bench() { # instance scenario proxy url mode [header]
  want "$2" || return 0
  if ! start_instance "$1"; then
    echo "$2/$3: $1 did not start; skipped (log: $(tail -n 1 "$W/$1.log" 2>/dev/null))." >> "$NOTES"
    stop_proxy
    return 0
  fi
  run_scenario "$2" "$3" "$4" "$5" "${6:-}"
  stop_proxy
}

for proxy in $PROXIES; do
  case "$proxy" in
    xsrouter)
      bench xsrouter plain xsrouter "$H/plain/small.json" http
      bench xsrouter mtls xsrouter "$H/mtls/small.json" http
      bench xsrouter token xsrouter "$H/token/small.json" http
      bench xsrouter exchange xsrouter "$H/exchange/small.json" http "x-approuter-authorization: Bearer $USER_TOKEN"
      bench xsrouter big xsrouter "$H/plain/big.bin" http
      bench xsrouter-tls tls-keepalive xsrouter "$S/plain/small.json" tls
      bench xsrouter-tls tls-newconn xsrouter "$S/plain/small.json" tls-new
      ;;
    nginx)
      bench nginx plain nginx "$H/plain/small.json" http
      bench nginx mtls nginx "$H/mtls/small.json" http
      bench nginx big nginx "$H/plain/big.bin" http
      bench nginx tls-keepalive nginx "$S/plain/small.json" tls
      bench nginx tls-newconn nginx "$S/plain/small.json" tls-new
      ;;
    approuter)
      bench approuter plain approuter "$H/plain/small.json" http
      bench approuter big approuter "$H/plain/big.bin" http
      ;;
  esac
done
log "measured in ${SECONDS}s"


# ---------------------------------------------------------------------------------------------
# Report
MACHINE=$W/machine.md
if [ "$LOADGEN" = wrk ]; then
  LOADGEN_VERSION="wrk $( (wrk -v 2>&1 || true) | head -n 1 | awk '{print $2}')"
else
  LOADGEN_VERSION="bench_tools load (wrk unavailable)"
fi
{
  echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs ($(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -n 1 | sed 's/^\(.\)/virtualised: \1/;s/^$/bare metal/'))"
  echo "- Memory: $(free -h | awk '/^Mem:/ {print $2}'), kernel $(uname -r), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
  echo "- xsrouter $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (with uncommitted changes in src/)'), $(rustc --version)"
  echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'), $LOADGEN_VERSION"
  if has node; then
    ar_version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$ARREF/node_modules/@sap/approuter/package.json" 2>/dev/null | head -n 1)
    echo "- Node.js $(node --version)${ar_version:+, @sap/approuter $ar_version}"
  fi
  echo "- Load: ${DURATION}s per point after ${WARMUP}s warm-up, connections: $CONCURRENCY; $PINNING"
  echo "- Load average at the end of the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$MACHINE"

# Hand-written analysis (profiles, before/after) below this marker survives a new run.
KEEP_MARKER='<!-- kept across runs -->'
KEPT=$W/kept.md
: > "$KEPT"
[ -f "$OUT" ] && sed -n "/^$KEEP_MARKER\$/,\$p" "$OUT" > "$KEPT"
"$TOOLS" report --results "$RESULTS" --idle "$IDLE" --machine "$MACHINE" --notes "$NOTES" \
  --note "$NOTE" --out "$OUT"
if [ -s "$KEPT" ]; then printf '\n' >> "$OUT"; cat "$KEPT" >> "$OUT"; fi
log "report written to $OUT"
