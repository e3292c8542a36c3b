#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# lab_mtu: the overlay MTU is right: 1450 in pods and on the overlay devices (1500 on the fabric,
# which then carries a full VXLAN frame), a 1450-byte DF packet crosses hosts and a 1451-byte one
# does not, and bulk TCP with full-size segments completes quickly (no PMTU black hole).
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd ping
STREAM=$PROGS/stream
[ -x "$STREAM" ] || skip "needs $STREAM (make tests)"

lab_up --no-slim

mtu() { in_ns "$1" cat "/sys/class/net/$2/mtu"; }
counter() { in_ns "$1" cat "/sys/class/net/$2/statistics/$3"; }

log "device MTUs"
for t in h1/p1 h1/p2 h2/p1 h2/p2; do assert_eq "$(mtu "$t" eth0)" 1450 "MTU of eth0 in $t"; done
for h in h1 h2; do
	assert_eq "$(mtu "$h" flannel.1)" 1450 "MTU of flannel.1 in $h"
	assert_eq "$(mtu "$h" cni0)" 1450 "MTU of cni0 in $h"
	assert_eq "$(mtu "$h" eth0)" 1500 "MTU of eth0 in $h"
done

# df_ping SRC DST SIZE: one ping of SIZE bytes of IP packet with DF set.
df_ping() { in_ns "$1" ping -n -c 1 -W 2 -M "do" -s $(($3 - 28)) "$(addr "$2")" 2>&1; }

log "DF pings at the MTU and one byte over"
for pair in "h1/p1 h2/p1" "h2/p2 h1/p2" "h1 h2/p2" "h2/p1 h1"; do
	read -r src dst <<<"$pair"
	out=$(df_ping "$src" "$dst" 1450) || fail "$src -> $dst: 1450-byte DF ping failed: $out"
	rc=0
	out=$(df_ping "$src" "$dst" 1451) || rc=$?
	[ "$rc" != 0 ] || fail "$src -> $dst: a 1451-byte DF ping crossed the 1450-byte overlay"
	[[ $out == *"mtu=1450"* ]] ||
		fail "$src -> $dst: 1451-byte DF ping: expected a local mtu=1450 error: $out"
done
# The fabric carries full 1500-byte packets: a 1450-byte overlay packet plus 50 bytes of VXLAN.
out=$(df_ping h1 h2 1500) || fail "h1 -> h2: 1500-byte DF ping on the fabric failed: $out"

log "bulk TCP with full-size segments"
BYTES=$((20 * 1000 * 1000))
port=6000
for pair in "h1/p1 h2/p2" "h2/p2 h1/p1" "h1 h2/p1"; do
	read -r src dst <<<"$pair"
	port=$((port + 1))
	host=${src%/*}
	bg "recv$port" "$dst" "$STREAM" --timeout 20 recv "$port" "$BYTES" "$port"
	wait_for 5 listening "$dst" "$port"
	bytes0=$(counter "$host" flannel.1 tx_bytes)
	sent=$(in_ns "$src" "$STREAM" --timeout 20 send "$(addr "$dst")" "$port" "$BYTES" \
		"$port") || fail "$src -> $dst: 20 MB did not get through within 20 s"
	rc=0
	eval "wait \$PID_recv$port" || rc=$?
	[ "$rc" = 0 ] || fail "$src -> $dst: receiver exited $rc: $(cat "$TMP/recv$port.log")"
	bytes=$(($(counter "$host" flannel.1 tx_bytes) - bytes0))
	assert_ge "$bytes" "$BYTES" "$src -> $dst: bytes through flannel.1 of $host"
	# The connection used full-size segments for a 1450-byte path: 1450 - 40 bytes of IP and
	# TCP headers - 12 of timestamps = 1398. A smaller MSS means the path was probed down.
	mss=$(sed -n 's/.* mss=\([0-9]*\).*/\1/p' <<<"$sent")
	assert_eq "$mss" 1398 "$src -> $dst: send MSS"
	secs=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$sent")
	awk -v s="$secs" 'BEGIN { exit !(s < 20) }' || fail "$src -> $dst: took $secs s"
	log "$src -> $dst: $sent"
done
log "ok"
