#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The sidecar case: two shimmed processes in one pod talking over 127.0.0.1 ride the same-host
# fast path too, with loopback addresses on both ends. A redis-server bound to 127.0.0.1 in h1/p1
# serves a redis-cli in the same pod (value checked, CLIENT LIST shows a 127.0.0.1 peer, the
# router's redirected counter grows, `slimctl conns` shows the connection on the sockmap path),
# while a client in another pod is refused exactly as the kernel refuses it without slim (the
# loopback listener is private to its pod). An iperf3 over 127.0.0.1 moves its bytes redirected.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
need_cmd jq redis-server redis-cli iperf3
lab_up --hosts 1 --pods 2 >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "slimlab up"; }
ctl() { "$BIN/slimctl" -s "/run/slim/$PREFIX/h1/router.sock" "$@"; }
[ "$(ctl --json status | jq -r .fastpath.enabled)" = true ] || fail "the router's fast path is off"
redirected() { ctl --json status | jq -r .fastpath.redirected; }
host_listener() {
	ctl --json listeners | jq -e --arg p "$1" '.listeners | any(.overlay | endswith(":" + $p))'
}

log "redis-server on 127.0.0.1:6379 in h1/p1, shimmed"
bg redis h1/p1 --slim redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
	--dir "$TMP" --protected-mode no
wait_for 10 host_listener 6379

r0=$(redirected)
value=$(head -c 3000 /dev/urandom | base64 -w0)
in_slim h1/p1 redis-cli -h 127.0.0.1 -p 6379 set k "$value" | grep -q OK || fail "SET"
[ "$(in_slim h1/p1 redis-cli -h 127.0.0.1 -p 6379 get k)" = "$value" ] || fail "GET returned another value"
clients=$(in_slim h1/p1 redis-cli -h 127.0.0.1 -p 6379 client list)
log "CLIENT LIST: $clients"
grep -q 'addr=127\.0\.0\.1:' <<<"$clients" || fail "redis sees no 127.0.0.1 peer: $clients"
r1=$(redirected)
log "redirected sends: $((r1 - r0))"
[ $((r1 - r0)) -gt 0 ] || fail "no send was redirected: the loopback connection was not on the fast path"

log "a held connection is listed, on the sockmap path, with loopback overlay addresses"
bg hold h1/p1 --slim redis-cli -h 127.0.0.1 -p 6379 blpop nothing 30
wait_for 10 sh -c "'$BIN/slimctl' -s '/run/slim/$PREFIX/h1/router.sock' --json conns |
	jq -e '.conns | any(.overlay_dst == \"127.0.0.1:6379\" and .accelerated and .dir == \"out\")'"
ctl conns

log "another pod cannot reach the loopback listener (refused, as without slim)"
if in_slim h1/p2 redis-cli -h "$(addr h1/p1)" -p 6379 ping >"$TMP/other.out" 2>&1; then
	fail "a client in h1/p2 reached a listener bound to 127.0.0.1 in h1/p1: $(cat "$TMP/other.out")"
fi
grep -qi "refused" "$TMP/other.out" || fail "expected a refusal: $(cat "$TMP/other.out")"

log "iperf3 over 127.0.0.1 inside h1/p1"
bg iperf h1/p1 --slim iperf3 -s -1 -B 127.0.0.1 -p 5201
wait_for 10 host_listener 5201
r0=$(redirected)
in_slim h1/p1 iperf3 -c 127.0.0.1 -p 5201 -t 2 -J >"$TMP/iperf.json" || fail "iperf3 client"
r1=$(redirected)
bps=$(jq '.end.sum_received.bits_per_second' "$TMP/iperf.json")
log "iperf3 over 127.0.0.1: $(awk -v b="$bps" 'BEGIN { printf "%.1f", b / 1e9 }') Gbit/s," \
	"$((r1 - r0)) sends redirected"
[ $((r1 - r0)) -gt 1000 ] || fail "iperf3's bytes were not redirected ($((r1 - r0)) sends)"
log "ok"
