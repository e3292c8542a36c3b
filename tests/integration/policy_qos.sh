#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Per-pod egress rate limits (slimctl pod set --egress-rate): iperf3 from a pod limited to
# 100mbit measures 100 Mbit/s +- 10 % over slim while an unlimited pod beside it runs at full
# speed; the same limit holds on the overlay path (no shim); removing the limit restores full
# speed for a connection already running and for new ones; --priority sets the class priority.
# tc runs off the router's loop: while a pod set waits for a slow tc (SLIM_TC, a wrapper that
# sleeps), slimctl status and other pods' connects stay fast, the answer comes once tc is through;
# two sets for one pod end with the later one in force; a failing tc is reported to the caller
# and leaves the previous limit in force (iperf3 still measures it); an upgrade asked meanwhile
# hands over only once tc is through, and the new router knows the limits.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd iperf3 jq tc
CTL=$BIN/slimctl
SL=$TOP/build/tests/progs/setup_latency
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] && [ -x "$SL" ] ||
	skip "shim, router or setup_latency not built"

# The routers run tc through this: slow while $TMP/tc.slow exists (sleeping the seconds it
# holds), failing once for $TMP/tc.fail.
TC_SLEEP=1.5
cat >"$TMP/tc" <<EOT
#!/bin/sh
[ -e "$TMP/tc.slow" ] && sleep \$(cat "$TMP/tc.slow")
rm "$TMP/tc.fail" 2>/dev/null && exit 1
exec $(command -v tc) "\$@"
EOT
chmod +x "$TMP/tc"
export SLIM_TC=$TMP/tc
lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
S2=/run/slim/$PREFIX/h2/router.sock
ctl1() { "$CTL" -s "$S1" "$@"; }
mbit() { jq '.end.sum_received.bits_per_second / 1e6 | floor' "$1"; }
in_range() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; }

bg s1 h2/p1 --slim iperf3 -s -4 -p 5201
bg s2 h2/p2 --slim iperf3 -s -4 -p 5201
bg s3 h2/p1 iperf3 -s -4 -p 5202
wait_for 10 listening h2/p1 5201
wait_for 10 listening h2/p2 5201
wait_for 10 listening h2/p1 5202
wait_for 10 sh -c "'$CTL' -s '$S2' --json listeners | jq -e '.listeners | length == 2'"

log "limit h1/p1 to 100mbit"
out=$(ctl1 pod set p1 --egress-rate 100mbit) || fail "pod set: $out"
[ "$out" = "pod p1: egress rate 100mbit, priority none" ] || fail "pod set said: $out"
if out=$(ctl1 pod set p1 --egress-rate 100furlongs 2>&1); then fail "bad rate accepted"; fi
echo "$out" | grep -q 'bad rate "100furlongs"' || fail "bad rate error: $out"

log "slim: the limited pod and an unlimited one side by side, 4 s"
in_slim h1/p1 iperf3 -4 -c 10.244.2.2 -p 5201 -t 4 -J >"$TMP/lim.json" &
lim=$!
in_slim h1/p2 iperf3 -4 -c 10.244.2.3 -p 5201 -t 4 -J >"$TMP/free.json" || fail "unlimited iperf3"
wait $lim || fail "limited iperf3: $(jq -r .error "$TMP/lim.json")"
l=$(mbit "$TMP/lim.json") f=$(mbit "$TMP/free.json")
log "  limited $l Mbit/s, unlimited $f Mbit/s"
in_range "$l" 90 110 || fail "limited pod: $l Mbit/s, expected 100 +- 10 %"
in_range "$f" 500 1000000 || fail "unlimited pod slowed to $f Mbit/s"
in_ns h1 tc -s class show dev eth0 | grep -q "rate 100Mbit" || fail "no HTB class on h1 eth0"

log "overlay (no shim): the same limit"
in_ns h1/p1 iperf3 -4 -c 10.244.2.2 -p 5202 -t 3 -J >"$TMP/ovl.json" || fail "overlay iperf3"
o=$(mbit "$TMP/ovl.json")
log "  overlay limited $o Mbit/s"
in_range "$o" 90 110 || fail "limited pod on the overlay: $o Mbit/s"

log "removing the limit speeds up a running connection"
in_slim h1/p1 iperf3 -4 -c 10.244.2.2 -p 5201 -t 6 -J >"$TMP/run.json" &
run=$!
sleep 2.5 # a point in the middle of the measurement, not a readiness wait
ctl1 pod set p1 --egress-rate none >/dev/null || fail "pod set none"
wait $run || fail "running iperf3"
first=$(jq '.intervals[1].sum.bits_per_second / 1e6 | floor' "$TMP/run.json")
last=$(jq '.intervals[-1].sum.bits_per_second / 1e6 | floor' "$TMP/run.json")
log "  same connection: second 2 at $first Mbit/s, second 6 at $last Mbit/s"
in_range "$first" 80 120 || fail "before removal: $first Mbit/s"
in_range "$last" 500 1000000 || fail "after removal: $last Mbit/s"
in_ns h1 tc class show dev eth0 | grep -q . && fail "class left behind: $(in_ns h1 tc class show dev eth0)"
in_ns h1/p1 tc qdisc show dev eth0 | grep -q htb && fail "overlay shaping left behind"
in_slim h1/p1 iperf3 -4 -c 10.244.2.2 -p 5201 -t 2 -J >"$TMP/new.json" || fail "new iperf3"
n=$(mbit "$TMP/new.json")
log "  new connection $n Mbit/s"
in_range "$n" 500 1000000 || fail "new connection after removal: $n Mbit/s"

log "priority: the class gets it (HTB prio 7 - N)"
ctl1 pod set p2 --priority 5 >/dev/null || fail "pod set priority"
in_ns h1 tc class show dev eth0 | grep -q "prio 2 rate 100Gbit" || fail "class: $(in_ns h1 tc class show dev eth0)"
ctl1 --json pod set p2 --priority none | jq -e '.qos.priority == null' >/dev/null || fail "priority none"
in_ns h1 tc qdisc show dev eth0 | grep -q htb && fail "HTB root left behind"

LOG1=/run/slim/$PREFIX/h1/router.log
ms() { echo $(( $(date +%s%N) / 1000000 )); }
bg lat h2/p2 --slim "$SL" server 0.0.0.0 7000
wait_for 10 listening h2/p2 7000
in_slim h1/p2 "$SL" client 10.244.2.3 7000 5 >/dev/null || fail "setup_latency warm-up"

log "a pod set waiting for a slow tc (${TC_SLEEP} s a run) does not hold the router's loop"
echo $TC_SLEEP >"$TMP/tc.slow"
t0=$(ms)
ctl1 pod set p1 --egress-rate 50mbit >"$TMP/set1.out" 2>&1 &
set1=$!
wait_for 5 grep -q "pod p1: egress rate 50mbit, priority (unchanged) asked for" "$LOG1"
worst=0
for k in 1 2 3 4 5; do
	a=$(ms)
	ctl1 status >/dev/null || fail "status while tc runs"
	b=$(ms)
	[ $((b - a)) -gt "$worst" ] && worst=$((b - a))
done
in_slim h1/p2 "$SL" client 10.244.2.3 7000 20 >"$TMP/lat.json" || fail "connects while tc runs"
kill -0 $set1 2>/dev/null || fail "pod set was answered before tc was through: $(cat "$TMP/set1.out")"
c50=$(jq .connect_p50_us "$TMP/lat.json") cmax=$(jq .connect_max_us "$TMP/lat.json")
ok=$(jq .ok "$TMP/lat.json")
log "  while tc ran: slimctl status worst ${worst} ms; h1/p2's connects p50 ${c50} us, max ${cmax} us ($ok/20)"
[ "$worst" -lt 500 ] || fail "slimctl status took $worst ms while tc ran"
[ "$ok" = 20 ] || fail "connects while tc ran: $(cat "$TMP/lat.json")"
in_range "$cmax" 0 500000 || fail "a connect took $cmax us while tc ran"
wait $set1 || fail "slow pod set: $(cat "$TMP/set1.out")"
t1=$(ms)
log "  pod set answered after $((t1 - t0)) ms: $(cat "$TMP/set1.out")"
[ "$(cat "$TMP/set1.out")" = "pod p1: egress rate 50mbit, priority none" ] || fail "slow pod set said: $(cat "$TMP/set1.out")"
[ $((t1 - t0)) -ge 2500 ] || fail "answered after $((t1 - t0)) ms: before tc was through"
in_ns h1 tc class show dev eth0 | grep -q "rate 50Mbit" || fail "no 50Mbit class: $(in_ns h1 tc class show dev eth0)"

log "two sets for one pod, the second while the first waits for tc: the second is in force"
ctl1 pod set p1 --egress-rate 300mbit >"$TMP/set2.out" 2>&1 &
set2=$!
wait_for 5 grep -q "pod p1: egress rate 300mbit, priority (unchanged) asked for" "$LOG1"
ctl1 pod set p1 --egress-rate 100mbit >"$TMP/set3.out" 2>&1 || fail "second set: $(cat "$TMP/set3.out")"
wait $set2 || fail "first set: $(cat "$TMP/set2.out")"
log "  first: $(cat "$TMP/set2.out"); second: $(cat "$TMP/set3.out")"
rm -f "$TMP/tc.slow"
classes=$(in_ns h1 tc class show dev eth0)
echo "$classes" | grep -q "rate 100Mbit" && ! echo "$classes" | grep -q "rate 300Mbit" ||
	fail "classes after two sets: $classes"
in_ns h1/p1 tc class show dev eth0 | grep -q "rate 100Mbit" || fail "overlay class: $(in_ns h1/p1 tc class show dev eth0)"

log "an upgrade asked while a pod set waits for tc hands over once tc is through"
echo 0.4 >"$TMP/tc.slow"
pid=$(cat "/run/slim/$PREFIX/h1/router.pid")
ctl1 pod set p2 --egress-rate 200mbit >"$TMP/set4.out" 2>&1 &
set4=$!
wait_for 5 grep -q "pod p2: egress rate 200mbit, priority (unchanged) asked for" "$LOG1"
"$SLIMLAB" router upgrade --prefix "$PREFIX" h1 >"$TMP/upgrade.out" 2>&1 || fail "upgrade: $(cat "$TMP/upgrade.out")"
wait $set4 || fail "pod set across the upgrade: $(cat "$TMP/set4.out")"
rm -f "$TMP/tc.slow"
[ "$(cat "/run/slim/$PREFIX/h1/router.pid")" != "$pid" ] || fail "the router was not replaced"
grep -q "pod p2: rate limit and priority in force" "$LOG1" || fail "p2's set was not through before the hand-over"
log "  $(cat "$TMP/set4.out"); $(cat "$TMP/upgrade.out")"
# The new router knows both limits: removing p2's leaves p1's class alone.
ctl1 pod set p2 --egress-rate none >/dev/null || fail "pod set p2 none after the upgrade"
classes=$(in_ns h1 tc class show dev eth0)
echo "$classes" | grep -q "rate 100Mbit" && ! echo "$classes" | grep -q "rate 200Mbit" ||
	fail "classes after the upgrade: $classes"

log "a failing tc: the caller is told, the previous limit stays in force"
touch "$TMP/tc.fail"
if out=$(ctl1 pod set p1 --egress-rate 20mbit 2>&1); then fail "a failed tc reported success: $out"; fi
log "  $out"
echo "$out" | grep -q "tc on the fabric interface: failed; previous settings restored" || fail "failure said: $out"
in_ns h1 tc class show dev eth0 | grep -q "rate 100Mbit" || fail "class after the failure: $(in_ns h1 tc class show dev eth0)"
in_slim h1/p1 iperf3 -4 -c 10.244.2.2 -p 5201 -t 3 -J >"$TMP/after.json" || fail "iperf3 after the failure"
a=$(mbit "$TMP/after.json")
log "  limited pod after the failed set: $a Mbit/s"
in_range "$a" 90 110 || fail "after the failed set: $a Mbit/s, expected 100 +- 10 %"
log "ok"
