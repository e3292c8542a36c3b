#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# redis across hosts (no persistence, data dir in $TMP): redis-cli SET/GET returns the value that
# was set, redis-benchmark SET/GET (20000 requests each) completes, and CLIENT LIST names the
# client by its overlay address and the server by the pod's. Both ends shimmed it runs over host
# sockets; with only the server shimmed it works over the overlay.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/apps/app.sh"

need_cmd redis-server redis-cli redis-benchmark
app_lab_up
dst=$(addr "$APP_SERVER")
src=$(addr "$APP_CLIENT")
base=6379

rcli() { app_client redis-cli -h "$dst" -p "$port" "$@"; }

while read -r case srv cli idx <&3; do
	app_case "$case" "$srv" "$cli" "$idx"
	port=$((base + idx))
	mkdir -p "$TMP/redis_$case"
	app_server redis redis-server --port "$port" --bind 0.0.0.0 --protected-mode no --save '' \
		--appendonly no --dir "$TMP/redis_$case" --logfile '' --daemonize no
	app_wait_server "$port"
	app_measure_begin

	value="v-$case-$RANDOM$RANDOM"
	assert_eq "$(rcli SET slimkey "$value")" OK "case $case: SET"
	assert_eq "$(rcli GET slimkey)" "$value" "case $case: GET"

	out=$TMP/bench_$case.log
	app_client redis-benchmark -h "$dst" -p "$port" -t set,get -n 20000 -c 20 -q >"$out" 2>&1 ||
		{ cat "$out"; fail "case $case: redis-benchmark failed"; }
	# -q prints progress with carriage returns, then one "SET: N requests per second" line each.
	tr '\r' '\n' <"$out" >"$out.txt"
	set_rps=$(sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' "$out.txt" | tail -n1)
	get_rps=$(sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' "$out.txt" | tail -n1)
	log "case $case: redis-benchmark SET $set_rps/s, GET $get_rps/s"
	[ -n "$set_rps" ] && [ -n "$get_rps" ] ||
		{ cat "$out.txt"; fail "case $case: no benchmark result"; }
	# The server counted every request (2 from redis-cli, 40000 from the benchmark).
	cmds=$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed:\([0-9]*\)/\1/p')
	assert_ge "$cmds" 40002 "case $case: commands processed by the server"

	clients=$(rcli CLIENT LIST)
	log "case $case: CLIENT LIST: $clients"
	grep -q "laddr=$dst:$port " <<<"$clients" ||
		fail "case $case: CLIENT LIST does not show laddr=$dst:$port"
	grep -q "addr=$src:[0-9]" <<<"$clients" || fail "case $case: CLIENT LIST lacks addr=$src"
	if grep -v "addr=$src:[0-9]" <<<"$clients" | grep -q .; then
		fail "case $case: CLIENT LIST shows other addresses"
	fi
	app_measure_end $((512 * 1024))
	app_stop_server
done 3< <(app_cases server)

app_finish
