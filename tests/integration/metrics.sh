#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The routers' Prometheus endpoint (slimrouterd --metrics, which slimlab up turns on at
# <fabric IP>:9464): the scrape passes promtool's checks, the counters move by what was done (N
# short slim connections on one host and N across hosts), other paths get 404 and other methods
# 405, a garbage request gets an HTTP error, and 20 idle connections from one address neither
# stop the router routing nor keep a scrape from another address out for more than 2 s.
# timeout: 180
. "$(dirname "$0")/../lib.sh"

CHK=$PROGS/samehost_check
N=20
[ -x "$CHK" ] || skip "build/tests/progs/samehost_check is not built"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
need_cmd curl promtool python3 jq
lab_up --hosts 2 --pods 2 >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "slimlab up"; }
srv=$(addr h1/p1)
url1=http://198.18.0.1:9464/metrics
url2=http://198.18.0.2:9464/metrics

ctl() { local h=$1; shift; "$BIN/slimctl" -s "/run/slim/$PREFIX/h$h/router.sock" "$@"; }
router_alive() { kill -0 "$(cat "/run/slim/$PREFIX/h$1/router.pid")"; }
# scrape FROM URL OUT [curl options]: GET URL from host FROM's namespace into OUT.
scrape() { in_ns "$1" curl -sSf --max-time "${4:-5}" -o "$3" "$2"; }
# value FILE SAMPLE: the value of one sample line ("name{labels}"), or fail.
value() {
	awk -v s="$2" '$1 == s { print $2; found = 1 } END { exit !found }' "$1" ||
		fail "no sample $2 in $(basename "$1")"
}
# status FROM CURL-ARGS...: the HTTP status code a request gets.
status() { in_ns "$1" curl -s --max-time 5 -o /dev/null -w '%{http_code}' "${@:2}" || true; }
host_listener() {
	ctl 1 --json listeners | jq -e --arg o "$srv:9000" '.listeners | any(.overlay == $o)'
}

bg echo h1/p1 --slim "$CHK" server 9000
wait_for 10 grep -q '^listening' "$TMP/echo.log"
wait_for 10 host_listener

scrape h1 "$url1" "$TMP/h1.before"
scrape h1 "$url2" "$TMP/h2.before"
log "scrape of h1 before: $(wc -l <"$TMP/h1.before") lines"
promtool check metrics <"$TMP/h1.before" >"$TMP/promtool.out" 2>&1 ||
	{ cat "$TMP/promtool.out"; fail "promtool check metrics rejects h1's scrape"; }
promtool check metrics <"$TMP/h2.before" >"$TMP/promtool.out" 2>&1 ||
	{ cat "$TMP/promtool.out"; fail "promtool check metrics rejects h2's scrape"; }
log "promtool check metrics: ok"

# N connections on h1 (h1/p2 -> h1/p1) and N across the fabric (h2/p1 -> h1/p1).
in_slim h1/p2 timeout 60 "$CHK" churn "$srv" 9000 "$N" >"$TMP/local.out" 2>&1 || true
grep -q "^churn $N connections .* 0 failed$" "$TMP/local.out" ||
	fail "same-host connections: $(tail -n1 "$TMP/local.out")"
in_slim h2/p1 timeout 60 "$CHK" churn "$srv" 9000 "$N" >"$TMP/remote.out" 2>&1 || true
grep -q "^churn $N connections .* 0 failed$" "$TMP/remote.out" ||
	fail "cross-host connections: $(tail -n1 "$TMP/remote.out")"

scrape h1 "$url1" "$TMP/h1.after"
scrape h1 "$url2" "$TMP/h2.after"
promtool check metrics <"$TMP/h1.after" >"$TMP/promtool.out" 2>&1 ||
	{ cat "$TMP/promtool.out"; fail "promtool check metrics rejects h1's second scrape"; }
delta() { echo $(($(value "$TMP/$1.after" "$2") - $(value "$TMP/$1.before" "$2"))); }
c1=$(delta h1 'slim_connects_total{outcome="slim"}')
c2=$(delta h2 'slim_connects_total{outcome="slim"}')
a1=$(delta h1 'slim_accepts_total{identity="valid"}')
log "after $N + $N connections: h1 slim connects +$c1, h2 slim connects +$c2, h1 accepts +$a1"
assert_ge "$c1" "$N" "h1's slim_connects_total{outcome=\"slim\"} increase"
assert_ge "$c2" "$N" "h2's slim_connects_total{outcome=\"slim\"} increase"
assert_ge "$a1" "$((2 * N))" "h1's slim_accepts_total{identity=\"valid\"} increase"
assert_eq "$(delta h1 'slim_accepts_total{identity="none"}')" 0 "h1's anonymous accepts"
# The setup histogram counts each side's connects where it was made: h1's same-host ones, h2's
# cross-host ones, each in a bucket (le="+Inf" is the count; the sum is positive).
s1=$(delta h1 'slim_connect_setup_seconds_count{path="samehost"}')
s2=$(delta h2 'slim_connect_setup_seconds_count{path="crosshost"}')
log "setup histogram: h1 samehost +$s1, h2 crosshost +$s2;" \
	"h2 crosshost le=0.001: $(value "$TMP/h2.after" 'slim_connect_setup_seconds_bucket{path="crosshost",le="0.001"}')," \
	"sum $(value "$TMP/h2.after" 'slim_connect_setup_seconds_sum{path="crosshost"}') s"
assert_ge "$s1" "$N" "h1's slim_connect_setup_seconds_count{path=\"samehost\"} increase"
assert_ge "$s2" "$N" "h2's slim_connect_setup_seconds_count{path=\"crosshost\"} increase"
assert_eq "$(value "$TMP/h1.after" 'slim_connect_setup_seconds_bucket{path="samehost",le="+Inf"}')" \
	"$(value "$TMP/h1.after" 'slim_connect_setup_seconds_count{path="samehost"}')" "+Inf bucket = count"
awk '$1 == "slim_connect_setup_seconds_sum{path=\"crosshost\"}" { exit !($2 > 0) }' \
	"$TMP/h2.after" || fail "h2's crosshost setup sum is not positive"
# Each same-host churn connection sends bytes: the fast path redirected them.
rb=$(delta h1 slim_fastpath_redirected_bytes_total)
log "h1's fast path redirected +$rb bytes"
assert_ge "$rb" "$N" "h1's slim_fastpath_redirected_bytes_total increase"
assert_eq "$(value "$TMP/h1.after" slim_revocations_total)" 0 "revocations without a policy"
# Router clients per pod: one sample for each of h1's pods, the server's pod holding at least one.
assert_eq "$(grep -c '^slim_pod_router_clients{pod=' "$TMP/h1.after")" 2 "per-pod client samples on h1"
awk '/^slim_pod_router_clients\{/ { n += $2 } END { exit !(n >= 1) }' "$TMP/h1.after" ||
	fail "no router client counted for h1's pods while a shimmed server runs there"
assert_eq "$(value "$TMP/h1.after" 'slim_pods{scope="local"}')" 2 "h1's local pods"
assert_eq "$(value "$TMP/h1.after" 'slim_pods{scope="remote"}')" 2 "h1's remote pods"
assert_ge "$(value "$TMP/h1.after" slim_listeners)" 1 "h1's listeners"
assert_eq "$(value "$TMP/h1.after" slim_governance_enabled)" 1 "h1's governance"
assert_ge "$(value "$TMP/h1.after" 'slim_peer_connections{direction="in"}')" 1 \
	"h1's incoming peer connections (h2 asked it)"
start=$(value "$TMP/h1.after" slim_router_start_time_seconds)
now=$(date +%s)
[ "$start" -le "$now" ] && [ "$start" -ge $((now - 300)) ] ||
	fail "slim_router_start_time_seconds $start is not in the last 5 minutes (now $now)"
# The same numbers slimctl status reports (the kernel's counters are only read, never copied).
ok=$(ctl 1 --json status | jq -r '.governance.kernel.connect_ok')
assert_ge "$ok" "$(value "$TMP/h1.after" 'slim_connects_total{outcome="slim"}')" \
	"slimctl's connect_ok vs the scrape before it"

# A held connection across hosts shows in the connection gauge (h1 is its server end).
bg hold h2/p1 --slim python3 -c "
import socket, time
s = socket.create_connection(('$srv', 9000))
print('connected', flush=True)
time.sleep(30)"
wait_for 10 grep -q '^connected' "$TMP/hold.log"
held_in() {
	scrape h1 "$url1" "$TMP/h1.held" &&
		[ "$(value "$TMP/h1.held" 'slim_connections{direction="in",path="host"}')" -ge 1 ]
}
wait_for 5 held_in
kill_tree "$PID_hold"

# Paths and methods.
assert_eq "$(status h1 "http://198.18.0.1:9464/other")" 404 "GET /other"
assert_eq "$(status h1 -X POST -d x "$url1")" 405 "POST /metrics"
assert_eq "$(status h1 -I "$url1")" 200 "HEAD /metrics"
# Not HTTP: a malformed request line gets 400; bytes with NULs in them (libmicrohttpd 0.9.75 just
# closes the connection on those) get an HTTP error or a close, and the router carries on.
cat >"$TMP/garbage.py" <<'EOF2'
import socket, sys
s = socket.create_connection(("198.18.0.1", 9464), timeout=5)
s.sendall(sys.argv[1].encode("latin-1") + b"\r\n\r\n")
print(s.recv(64).split(b"\r\n")[0].decode(errors="replace"))
EOF2
reply=$(in_ns h1 python3 "$TMP/garbage.py" $'\x01\x02 nonsense, not a request line') || true
log "garbage request: \"$reply\""
[[ $reply =~ ^HTTP/1\.[01]\ 4[0-9][0-9] ]] || fail "garbage request: got \"$reply\", not a 4xx"
reply=$(in_ns h1 python3 -c '
import socket
s = socket.create_connection(("198.18.0.1", 9464), timeout=5)
s.sendall(bytes(range(256)) * 4)
print(s.recv(64).split(b"\r\n")[0].decode(errors="replace"))') || true
log "binary request: \"$reply\""
[ -z "$reply" ] || [[ $reply =~ ^HTTP/1\.[01]\ [45][0-9][0-9] ]] ||
	fail "binary request: got \"$reply\", neither an HTTP error nor a close"
scrape h1 "$url1" "$TMP/h1.garbage" || fail "no scrape after the garbage requests"
router_alive 1 || fail "h1's router died after the garbage request"

# 20 idle connections from h2 (one address): the router keeps routing, and a scrape from h1 gets
# through at once (a per-address limit leaves the other slots free).
cat >"$TMP/idle.py" <<'EOF'
import socket, sys, time
held = []
for _ in range(20):
    try:
        held.append(socket.create_connection(("198.18.0.1", 9464), timeout=2))
    except OSError as e:
        print("connect:", e, flush=True)
print("holding", len(held), flush=True)
time.sleep(60)
EOF
bg idle h2 python3 "$TMP/idle.py"
wait_for 10 grep -q '^holding' "$TMP/idle.log"
log "idle connections: $(cat "$TMP/idle.log")"
# The limit is in force: h2 itself, with its share of the slots held, is turned away.
! in_ns h2 curl -s -o /dev/null --max-time 2 "$url1" ||
	fail "h2 got a scrape in with 20 idle connections of its own open: no per-address limit"
t0=$(date +%s%N)
in_slim h1/p2 timeout 2 "$CHK" churn "$srv" 9000 1 >"$TMP/during.out" 2>&1 ||
	fail "a slim connect with 20 idle metrics connections open: $(tail -n1 "$TMP/during.out")"
scrape h1 "$url1" "$TMP/h1.during" 2 ||
	fail "scrape from h1 with 20 idle connections from h2 open did not finish in 2 s"
ctl 1 status >/dev/null || fail "slimctl status with 20 idle metrics connections open"
log "with 20 idle connections open: slim connect, scrape and status in" \
	"$((($(date +%s%N) - t0) / 1000000)) ms"
# The idle ones are dropped after 5 s, then h2 itself gets in again.
wait_for 15 scrape h2 "$url1" "$TMP/h2.later" 2
router_alive 1 || fail "h1's router died"
log "pass"
