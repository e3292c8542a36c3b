#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# sockperf TCP ping-pong (64-byte messages, 3 s) across hosts: the run completes, every message
# comes back, latency percentiles are reported; both ends shimmed it runs over host sockets, with
# only the server shimmed it still works over the overlay.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/apps/app.sh"

need_cmd sockperf
app_lab_up
dst=$(addr "$APP_SERVER")
base=11111

# pp_value SED-EXPR: one number from the client's report.
pp_value() { sed -n "s/$1/\\1/p" "$out" | tail -n1; }

while read -r case srv cli idx <&3; do
	app_case "$case" "$srv" "$cli" "$idx"
	port=$((base + idx))
	out=$TMP/pp_$case.log
	app_server sockperf sockperf sr --tcp -p "$port"
	app_wait_server "$port"
	app_measure_begin
	app_client sockperf pp --tcp -i "$dst" -p "$port" -m 64 -t 3 >"$out" 2>&1 ||
		{ tail -n 20 "$out"; fail "case $case: sockperf pp failed"; }
	# Strip the colour codes sockperf puts around some lines.
	sed -i 's/\x1b\[[0-9;]*m//g' "$out"
	lat=$(pp_value '.*Summary: Latency is \([0-9.]*\) usec.*')
	p50=$(pp_value '.*percentile 50.000 = *\([0-9.]*\).*')
	p99=$(pp_value '.*percentile 99.000 = *\([0-9.]*\).*')
	sent=$(pp_value '.*\[Valid Duration\].*SentMessages=\([0-9]*\);.*')
	recvd=$(pp_value '.*\[Valid Duration\].*ReceivedMessages=\([0-9]*\).*')
	[ -n "$lat" ] && [ -n "$p50" ] && [ -n "$p99" ] && [ -n "$sent" ] && [ -n "$recvd" ] ||
		{ tail -n 20 "$out"; fail "case $case: no latency report"; }
	log "case $case: $recvd round trips, latency avg $lat us, p50 $p50 us, p99 $p99 us"
	assert_ge "$recvd" 1000 "case $case: round trips"
	assert_eq "$recvd" "$sent" "case $case: messages answered"
	grep -q 'dropped messages = 0;' "$out" || fail "case $case: sockperf dropped messages"
	awk -v l="$lat" 'BEGIN { exit !(l > 0) }' || fail "case $case: latency $lat"
	app_measure_end $((recvd * 64 * 2))
	app_stop_server
done 3< <(app_cases server)

app_finish
