#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The same-host connection setup order: sockmap_order connects 1,000 times inside a fast-path
# cgroup, waits for establishment, calls sockmap_client_established, writes the 20-byte preamble
# and an app byte stream; the server must read the preamble first and then exactly the stream.
# Also with TCP_DEFER_ACCEPT and with TCP Fast Open (both must fall back to TCP, in order), and
# with the handshake's final ACK dropped (client established before the server's child exists).
# Without sockmap_client_established the sk_msg program's flow rules (a direction whose first
# sends found no mapped peer stays on TCP until those bytes were read; what apps get, who connect
# their sockets themselves) must still keep the order; without both, the dropped-ACK case must
# show the overtaking hazard, which proves the check can fail.
# timeout: 90
. "$(dirname "$0")/../lib.sh"

need_root
need_cmd ip nsenter nft
prog=$PROGS/sockmap_order
[ -x "$prog" ] || fail "$prog not built (make -C tests)"
cgroot=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
[ -n "$cgroot" ] || skip "no cgroup v2 mount"

ns=$PREFIX-sockorder
cg=$cgroot/$PREFIX-sockorder
cleanup "ip netns del $ns"
cleanup "rmdir_when_empty $cg"
# A killed run leaves its process in the cgroup for a moment (links and maps go with the process).
rmdir_when_empty() {
	local i
	for i in $(seq 50); do
		[ -e "$1" ] || return 0
		rmdir "$1" 2>/dev/null && return 0
		sleep 0.1
	done
}
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" addr add 198.18.0.1/32 dev lo

# order ARGS...: runs sockmap_order, its summary in $out; killed if the scenario ends first.
order() {
	local pid rc=0
	nsenter --net="/run/netns/$ns" "$prog" --cgroup "$cg" --host-ip 198.18.0.1 "$@" \
		>"$TMP/order.log" 2>&1 &
	pid=$!
	cleanup "kill $pid"
	wait $pid || rc=$?
	out=$(cat "$TMP/order.log")
	return $rc
}
# Numbers from the summary line.
left_to_tcp() { sed -n 's/.*left to TCP by sockmap_client_established \([0-9]*\).*/\1/p' <<<"$1"; }
misordered() { sed -n 's/.* \([0-9]*\) app bytes before the preamble.*/\1/p' <<<"$1"; }

order -n 1000 || fail "in-order setup: $out"
log "$out"
assert_eq "$(left_to_tcp "$out")" 0 "connections accelerated (none left to TCP)"

order -n 1000 --defer-accept || fail "TCP_DEFER_ACCEPT: $out"
log "$out"
order -n 1000 --tfo || fail "TCP Fast Open: $out"
log "$out"
order -n 300 --no-load || fail "baseline without the fast path: $out"
log "$out"

# Drop the final ACK of every handshake (pure ACKs to the listener's port; the server never
# sends data here, so nothing else is lost): the client is established and mapped while the
# server's child does not exist yet.
port=7999
nsenter --net="/run/netns/$ns" nft -f - <<NFT
table ip sockorder {
	chain in {
		type filter hook input priority 0;
		tcp dport $port tcp flags == ack ip length 52 drop
	}
}
NFT
order -n 200 --port $port || fail "dropped final ACK: $out"
log "$out"
assert_eq "$(left_to_tcp "$out")" 200 "dropped final ACK: connections left to TCP"
order -n 200 --port $port --no-settle ||
	fail "without sockmap_client_established the sk_msg program must keep the order: $out"
log "$out"
assert_eq "$(misordered "$out")" 0 "misordered connections with the sk_msg ordering rule"
if order -n 200 --port $port --no-settle --no-order; then
	fail "without either ordering rule the hazard did not show: $out"
fi
log "$out"
bad=$(misordered "$out")
assert_ge "$bad" 1 "misordered connections without any ordering rule"
[ ! -e "$cg" ] || fail "cgroup $cg left behind"
log "pass"
