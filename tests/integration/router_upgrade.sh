#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Hitless router upgrade (slimctl upgrade / slimlab router upgrade): while iperf3 streams run
# cross-host and same-host (fast path) and two clients open new connections without pause, h1's
# router is replaced 10 times in a row and h2's twice: no connect fails, both byte streams are
# intact, and every kind of state (pods, labels, listeners, policy, services, QoS, directory,
# counters) reads the same before and after; policy and service backends stay in force.
# Then the rollbacks: a binary that exits at once, one that crashes and one that hangs after
# attaching its programs, and one that cannot read the state format: each time the old router
# keeps serving (one log line says why) and its programs are back in force.
# timeout: 240
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/semantics.sh"
need_root
need_cmd jq iperf3 bpftool curl
SL=$TOP/build/tests/progs/setup_latency ST=$TOP/build/tests/progs/stream
[ -x "$SL" ] && [ -x "$ST" ] && [ -x "$SEM" ] && [ -x "$BIN/slimrouterd" ] && [ -e "$TOP/build/lib/libslim.so" ] ||
	skip "router, shim or setup_latency not built"
lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock S2=/run/slim/$PREFIX/h2/router.sock
ctl() { "$BIN/slimctl" -s "$@"; }
far=$(addr h2/p1) near=$(addr h1/p2) guarded=$(addr h2/p2)

log "servers: setup_latency and iperf3 in h2/p1 (cross-host) and h1/p2 (same host), shimmed"
bg srv_far h2/p1 --slim "$SL" server 0.0.0.0 8000
bg srv_near h1/p2 --slim "$SL" server 0.0.0.0 8001
bg srv_guarded h2/p2 --slim "$SL" server 0.0.0.0 8002
bg sem h2/p1 --slim "$SEM" server 8003
bg sem_near h1/p2 --slim "$SEM" server 8004
bg ip_far h2/p1 --slim iperf3 -s -4 -p 5201
bg ip_near h1/p2 --slim iperf3 -s -4 -p 5202
# Checked byte streams (every byte, in order): 3 GB each way, spanning the upgrades.
STREAM_BYTES=3000000000
bg st_far h2/p1 --slim "$ST" recv 5301 "$STREAM_BYTES" 7
bg st_near h1/p2 --slim "$ST" recv 5302 "$STREAM_BYTES" 8
for l in "$S2 :8000 " "$S1 :8001 " "$S2 :8002 " "$S2 :8003 " "$S1 :8004 " "$S2 :5201 " "$S1 :5202 " \
	"$S2 :5301 " "$S1 :5302 "; do
	wait_for 10 sh -c "'$BIN/slimctl' -s ${l%% *} listeners | grep -q '${l#* }'"
done

log "state of every kind: labels, a policy, a service, QoS"
"$SLIMLAB" label --prefix "$PREFIX" h2/p1 app=web tier=front
cat >"$TMP/policy.json" <<'EOF'
{"policies": [{"name": "guard", "podSelector": {"matchLabels": {"pod": "h2-p2"}},
  "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "h1-p1"}}}]}]}]}
EOF
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/policy.json" >/dev/null
cat >"$TMP/svc.json" <<'EOF'
{"services": [{"name": "web", "ip": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8000}],
  "selector": {"app": "web"}}]}
EOF
"$SLIMLAB" service apply --prefix "$PREFIX" "$TMP/svc.json" >/dev/null
ctl "$S2" pod set p2 --priority 3 >/dev/null
wait_for 10 sh -c "'$BIN/slimctl' -s '$S1' --json directory | jq -e '[.pods[] | select(.labels.app == \"web\")] | length == 1'"

# Everything a router reports that an upgrade must keep (uptime and the kernel's counters of
# the BPF programs, which are per program, aside).
snapshot() {
	local s=$1
	{
		ctl "$s" --json pod list | jq -cS '.pods'
		ctl "$s" --json listeners | jq -cS '[.listeners[] | del(.sockets)] | sort_by(.overlay)'
		ctl "$s" --json policy show | jq -cS '.policy | {origin, policies, rules, document}'
		ctl "$s" --json service show | jq -cS '.services'
		ctl "$s" --json directory | jq -cS '.pods | sort_by(.ip)'
		ctl "$s" --json conns | jq -cS '[.conns[] | select(.overlay_dst | test(":800[34]$"))] |
			sort_by(.cookie)'
		ctl "$s" --json status | jq -cS '{node, pods, listeners, services,
			peers: [.peers[] | {node, dir, connected, authenticated}] | sort}'
	}
}

log "a connection h1/p2 -> h2/p1 held across the upgrades (a later policy must revoke it)"
bg doomed h1/p2 --slim "$SEM" client --wait-file "$TMP/go_doomed" "$far" 8003 hold,wait
# And one on the same host (the fast path), which must still show as accelerated.
bg held h1/p1 --slim "$SEM" client --wait-file "$TMP/go_held" "$near" 8004 hold,wait
wait_for 10 grep -q '^ok hold' "$TMP/doomed.log"
wait_for 10 grep -q '^ok hold' "$TMP/held.log"

log "load: iperf3 cross-host and same-host, two connect loops; 10 upgrades of h1, 2 of h2"
bg ss_far h1/p1 --slim "$ST" send "$far" 5301 "$STREAM_BYTES" 7
bg ss_near h1/p1 --slim "$ST" send "$near" 5302 "$STREAM_BYTES" 8
bg ic_far h1/p1 --slim iperf3 -c "$far" -p 5201 -t 14 -i 0.5 -J
bg ic_near h1/p1 --slim iperf3 -c "$near" -p 5202 -t 14 -i 0.5 -J
bg loop_far h1/p1 --slim "$SL" client "$far" 8000 100000000 12
bg loop_near h1/p1 --slim "$SL" client "$near" 8001 100000000 12
# The stream receivers close their listeners once they accepted (a listener the app closed is
# dropped when the router next looks): the state to keep is what follows.
wait_for 10 sh -c "! '$BIN/slimctl' -s '$S2' listeners | grep -q ':5301 '"
wait_for 10 sh -c "! '$BIN/slimctl' -s '$S1' listeners | grep -q ':5302 '"
sleep 0.5
snapshot "$S1" >"$TMP/h1.before"
snapshot "$S2" >"$TMP/h2.before"
grep -q '"accelerated":true' "$TMP/h1.before" || fail "the held same-host connection is not on the fast path"
connects_before=$(ctl "$S1" --json status | jq .counters.connect)
for k in 1 2 3 4 5 6 7 8 9 10; do
	old=$(cat "/run/slim/$PREFIX/h1/router.pid")
	out=$("$SLIMLAB" router upgrade --prefix "$PREFIX" h1) || fail "upgrade $k of h1: $out"
	new=$(cat "/run/slim/$PREFIX/h1/router.pid")
	[ "$new" != "$old" ] || fail "upgrade $k: the pid file still names $old"
	# It exits right after GO (a zombie until its parent, if any, reaps it).
	wait_for 5 sh -c "! kill -0 $old || grep -q '^State:.*Z' /proc/$old/status"
	log "  h1 #$k: ${out#*upgraded: }"
	if [ "$k" = 3 ] || [ "$k" = 7 ]; then
		out=$("$SLIMLAB" router upgrade --prefix "$PREFIX" h2) || fail "upgrade of h2: $out"
		log "  h2: ${out#*upgraded: }"
	fi
	sleep 0.4
done
snapshot "$S1" >"$TMP/h1.after"
snapshot "$S2" >"$TMP/h2.after"
wait "$PID_loop_far" "$PID_loop_near" "$PID_ic_far" "$PID_ic_near" ||
	fail "a client failed: $(tail -n 3 "$TMP"/loop_*.log "$TMP"/ic_*.log)"
for l in far near; do
	r=$TMP/loop_$l.log
	log "  connects $l: $(jq -r '"\(.ok) ok, \(.failures) failed, p50 \(.connect_p50_us) us, p99 \(.connect_p99_us) us, max \(.connect_max_us) us"' "$r")"
	assert_eq "$(jq .failures "$r")" 0 "failed connects ($l) during the upgrades: $(jq -r .first_error "$r")"
	assert_ge "$(jq .ok "$r")" 1000 "connects ($l) during the upgrades"
	wait "$(eval echo "\$PID_ss_$l")" || fail "stream $l (send): $(cat "$TMP/ss_$l.log")"
	wait "$(eval echo "\$PID_st_$l")" || fail "stream $l (recv): $(cat "$TMP/st_$l.log")"
	log "  stream $l: intact: $(cat "$TMP/st_$l.log")"
	r=$TMP/ic_$l.log
	assert_eq "$(jq -r '.error // "none"' "$r")" none "iperf3 $l"
	log "  iperf3 $l: $(jq '.end.sum_received.bytes' "$r") bytes, $(jq -r '[.intervals[].sum.bits_per_second] | sort |
		"median \(.[length/2|floor]/1e9*100|round/100) Gbit/s, lowest 0.5 s interval \(.[0]/1e9*100|round/100) Gbit/s"' "$r")"
done

log "state after the upgrades: the same"
# iperf3 listens anew after each test: its host ports are the app's doing, not the router's.
same() { diff <(sed -E 's/"198.18.0.[12]:[0-9]+","overlay":"(10.244.[12].[23]:520[12])"/\1/g' "$1") \
	<(sed -E 's/"198.18.0.[12]:[0-9]+","overlay":"(10.244.[12].[23]:520[12])"/\1/g' "$2") >&2; }
same "$TMP/h1.before" "$TMP/h1.after" || fail "h1's state changed across the upgrades"
same "$TMP/h2.before" "$TMP/h2.after" || fail "h2's state changed across the upgrades"
assert_ge "$(ctl "$S1" --json status | jq .counters.connect)" "$connects_before" \
	"h1's connect counter (carried over)"

# A fresh connection over slim, a connect through the service, and the policy's refusal.
in_force() {
	local what=$1 out
	out=$(in_slim h1/p1 "$SL" client "$far" 8000 20 5) || fail "$what: a connect over slim: $out"
	out=$(in_slim h1/p1 "$SL" client 10.96.0.10 80 20 5) || fail "$what: the service: $out"
	assert_eq "$(jq .failures <<<"$out")" 0 "$what: connects through the service"
	out=$(in_slim h1/p2 "$SL" client "$guarded" 8002 1 3 || true)
	assert_eq "$(jq .ok <<<"$out")" 0 "$what: a connect the policy forbids"
	# Governed by programs that know this router (they route its misses to it): the kernel's
	# connect counter moves and the router sees its clients.
	assert_ge "$(ctl "$S1" --json status | jq '.governance.kernel.connect_ok')" 1 "$what: governed connects"
	# The metrics listener moved too (and serves what this router counts).
	in_ns h1 curl -sf --max-time 5 http://198.18.0.1:9464/metrics | grep -q '^slim_router_clients ' ||
		fail "$what: no metrics from h1's router"
}
cg=$(findmnt -n -t cgroup2 -o TARGET | awk 'NR == 1')/slim/$PREFIX-h1
progs() { bpftool cgroup show "$cg" | awk 'NR > 1 { print $1 }' | sort | tr '\n' ' '; }
in_force "after the upgrades"

log "a policy applied after the upgrades revokes the connection held across them"
cat >"$TMP/policy2.json" <<'EOF'
{"policies": [{"name": "guard", "podSelector": {"matchLabels": {"pod": "h2-p2"}},
  "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "h1-p1"}}}]}]},
 {"name": "front", "podSelector": {"matchLabels": {"pod": "h2-p1"}},
  "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "h1-p1"}}}]}]}]}
EOF
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/policy2.json" >/dev/null
touch "$TMP/go_doomed.1" "$TMP/go_held.1"
wait_for 20 grep -Eq '^(not )?ok wait' "$TMP/doomed.log"
wait_for 20 grep -Eq '^(not )?ok wait' "$TMP/held.log"
grep -q '^not ok wait' "$TMP/doomed.log" ||
	fail "the connection held across the upgrades survived a policy that forbids it"
grep -q '^ok wait' "$TMP/held.log" ||
	fail "the same-host connection held across the upgrades: $(tail -n1 "$TMP/held.log")"

log "rollbacks: each leaves the old router serving"
snapshot "$S1" >"$TMP/h1.rollback"
rollback() {
	local what=$1 binary=$2 why=$3 pid out attached
	pid=$(cat "/run/slim/$PREFIX/h1/router.pid")
	attached=$(progs)
	if out=$(ctl "$S1" upgrade "$binary" 2>&1); then fail "$what: the upgrade succeeded: $out"; fi
	log "  $what: $out"
	grep -q "$why" <<<"$out" || fail "$what: expected '$why' in the answer"
	assert_eq "$(cat "/run/slim/$PREFIX/h1/router.pid")" "$pid" "$what: the router's pid"
	kill -0 "$pid" || fail "$what: the old router is gone"
	grep -q "failed, this router keeps serving: .*$why" "/run/slim/$PREFIX/h1/router.log" ||
		fail "$what: no log line saying why"
	pat="slimrouterd --socket /run/slim/$PREFIX/h1/"
	[ "$(pgrep -c -f "$pat" || true)" = 1 ] ||
		fail "$what: routers of h1 running: $(pgrep -a -f "$pat")"
	# The programs attached to the router's cgroup are its own again (the pinned links).
	assert_eq "$(progs)" "$attached" "$what: programs on $cg"
	in_force "$what"
}
rollback "a binary that exits at once" /bin/false "exited with status 1"
for fault in crash hang old-format; do
	printf '#!/bin/sh\nSLIM_UPGRADE_FAULT=%s exec %s "$@"\n' "$fault" "$BIN/slimrouterd" \
		>"$TMP/router-$fault"
	chmod +x "$TMP/router-$fault"
done
rollback "a new router that crashes with its programs attached" "$TMP/router-crash" \
	"killed by signal 6"
rollback "a new router that hangs with its programs attached" "$TMP/router-hang" \
	"not ready within 3 s"
rollback "a new router that cannot read the state format" "$TMP/router-old-format" \
	"state format 1 is not one this binary reads"
snapshot "$S1" >"$TMP/h1.end"
same "$TMP/h1.rollback" "$TMP/h1.end" || fail "h1's state changed across the rollbacks"
log "ok"
