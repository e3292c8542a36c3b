#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# lab_stream: the lab's networks carry bulk TCP intact: 100 MB between every ordered pair of pods
# (across hosts over the VXLAN overlay, on one host over cni0) and between the hosts over the
# fabric, checked byte by byte at the receiver, with the traffic seen on the device it must cross.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
need_root
STREAM=$PROGS/stream
[ -x "$STREAM" ] || skip "needs $STREAM (make tests)"

lab_up --no-slim
BYTES=$((100 * 1000 * 1000))
port=5000

# tx_bytes TARGET DEV: bytes DEV of TARGET's namespace has sent.
tx_bytes() { in_ns "$1" cat "/sys/class/net/$2/statistics/tx_bytes"; }

# transfer SRC DST: stream BYTES from SRC to DST (a fresh seed and port each time, so a stream
# delivered to the wrong receiver cannot pass); the receiver checks every byte.
transfer() {
	local src=$1 dst=$2 rc=0 sent got
	port=$((port + 1))
	bg "recv$port" "$dst" "$STREAM" recv "$port" "$BYTES" "$port"
	wait_for 5 listening "$dst" "$port"
	sent=$(in_ns "$src" "$STREAM" send "$(addr "$dst")" "$port" "$BYTES" "$port") ||
		fail "$src -> $dst: sender failed"
	eval "wait \$PID_recv$port" || rc=$?
	got=$(cat "$TMP/recv$port.log")
	[ "$rc" = 0 ] || fail "$src -> $dst: receiver exited $rc: $got"
	# "bytes=N hash=H seconds=S": both ends must agree on N and H.
	assert_eq "${got% seconds=*}" "${sent% seconds=*}" "$src -> $dst: what arrived"
	log "$src -> $dst: $got ($(awk -v b="$BYTES" -v l="$got" \
		'BEGIN { sub(/.*seconds=/, "", l); printf "%.2f", b * 8 / l / 1e9 }') Gbit/s)"
}

# transfer_via SRC DST HOST DEV: transfer, and DEV of HOST sent at least BYTES meanwhile.
transfer_via() {
	local before after
	before=$(tx_bytes "$3" "$4")
	transfer "$1" "$2"
	after=$(tx_bytes "$3" "$4")
	assert_ge "$((after - before))" "$BYTES" "$1 -> $2: bytes sent by $4 of $3"
}

# transfer_not_via SRC DST HOST DEV: transfer, and DEV of HOST did not carry it.
transfer_not_via() {
	local before after
	before=$(tx_bytes "$3" "$4")
	transfer "$1" "$2"
	after=$(tx_bytes "$3" "$4")
	[ $((after - before)) -lt $((BYTES / 100)) ] ||
		fail "$1 -> $2 went through $4 of $3 ($((after - before)) bytes)"
}

pods=(h1/p1 h1/p2 h2/p1 h2/p2)
for src in "${pods[@]}"; do
	for dst in "${pods[@]}"; do
		[ "$src" != "$dst" ] || continue
		if [ "${src%/*}" != "${dst%/*}" ]; then
			# Across hosts: encapsulated by the source host's flannel.1.
			transfer_via "$src" "$dst" "${src%/*}" flannel.1
		else
			# On one host: through cni0, never the overlay device.
			transfer_not_via "$src" "$dst" "${src%/*}" flannel.1
		fi
	done
done
# Host to host: plain fabric, through eth0 and not the overlay.
transfer_via h1 h2 h1 eth0
transfer_not_via h2 h1 h2 flannel.1
log "ok"
