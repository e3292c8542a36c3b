#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# iperf3 across hosts (server in h2/p1, client in h1/p1) for 5 s: with both ends shimmed the stream
# must run over host sockets, with only the client shimmed it must still work over the overlay.
# The server listens on an IPv4 socket (-4) in those cases; a last case runs it with its default,
# one IPv6 socket on [::] that also accepts IPv4 (dual stack), which a shimmed server must serve
# over host sockets as well.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/apps/app.sh"

need_cmd iperf3 jq
app_lab_up
dst=$(addr "$APP_SERVER")
base=5201

while read -r case srv cli idx <&3; do
	app_case "$case" "$srv" "$cli" "$idx"
	port=$((base + idx))
	family=(-4)
	[ "$case" != dualstack ] || family=()
	out=$TMP/iperf3_$case.json
	app_server iperf3 iperf3 -s "${family[@]}" -p "$port" -1
	app_wait_server "$port"
	app_measure_begin
	app_client iperf3 -c "$dst" -p "$port" -t 5 -J >"$out" ||
		fail "case $case: iperf3 client: $(jq -r '.error // empty' "$out" 2>/dev/null)"
	bytes=$(jq -r '.end.sum_received.bytes' "$out")
	gbps=$(jq -r '.end.sum_received.bits_per_second / 1e9 * 100 | round / 100' "$out")
	log "case $case: $bytes bytes received, $gbps Gbit/s"
	assert_ge "$bytes" 1 "case $case: bytes received"
	awk -v g="$gbps" 'BEGIN { exit !(g > 0) }' || fail "case $case: throughput $gbps Gbit/s"
	# Most of what the receiver got must have crossed h1's fabric link.
	app_measure_end "$((bytes / 2))"
	app_stop_server
done 3< <(app_cases client; [ "$APP_HAVE_SLIM" = 0 ] || echo "dualstack slim slim 2")

app_finish
