#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Per-pod egress rate limits (slimctl pod set --egress-rate): iperf3 from a pod limited to
# 100mbit measures 100 Mbit/s +- 10 % over slim while an unlimited pod beside it runs at full
# speed; the same limit holds on the overlay path (no shim); removing the limit restores full
# speed for a connection already running and for new ones; --priority sets the class priority.
# timeout: 150
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd iperf3 jq tc
CTL=$BIN/slimctl
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"

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
log "ok"
