#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# memcached across hosts: a value stored with memccp comes back from memccat, memcslap SET and GET
# runs (4 threads x 5000) complete without errors and the server counts every command and hit,
# and "stats conns" (over bash's /dev/tcp, i.e. libc connect) shows the client's overlay address.
# Both ends shimmed it runs over host sockets; with only the client shimmed it works over the
# overlay.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/apps/app.sh"

need_cmd memcached memcslap memccp memccat memcstat
app_lab_up
dst=$(addr "$APP_SERVER")
src=$(addr "$APP_CLIENT")
base=11211
threads=4 runs=5000

# mc_stat NAME: one counter of the server's "stats".
mc_stat() {
	app_client memcstat --servers="$dst:$port" | awk -v k="$1:" '$1 == k { print $2 }'
}

# mc_slap TEST: one memcslap run; fails on any error or when fewer keys than asked were done.
mc_slap() {
	local t=$1 out=$TMP/slap_${1}_$APP_CASE.log keys secs

	app_client memcslap --servers="$dst:$port" --concurrency=$threads \
		--execute-number=$runs --test="$t" >"$out" 2>&1 ||
		{ cat "$out"; fail "case $APP_CASE: memcslap -t $t exited non-zero"; }
	# memcslap exits 0 even when it could not reach the server: read what it did.
	if grep -qiE 'error|fail' "$out"; then
		grep -iE 'error|fail' "$out" | head -n 5
		fail "case $APP_CASE: memcslap -t $t reported errors"
	fi
	keys=$(sed -n "s/^Time to $t *\([0-9]*\) keys by .*/\1/p" "$out")
	secs=$(sed -n "s/^Time to $t .*: *\([0-9.]*\) seconds.*/\1/p" "$out")
	log "case $APP_CASE: memcslap $t: ${keys:-0} keys in ${secs:-?} s"
	assert_eq "${keys:-0}" $((threads * runs)) "case $APP_CASE: memcslap $t keys"
}

# stats_conns: memcached's per-connection table, asked over a connection of bash's own.
stats_conns() {
	app_client bash -c "exec 3<>/dev/tcp/$dst/$port &&
		printf 'stats conns\r\nquit\r\n' >&3 && cat <&3" | tr -d '\r'
}

while read -r case srv cli idx <&3; do
	app_case "$case" "$srv" "$cli" "$idx"
	port=$((base + idx))
	app_server memcached memcached -u root -p "$port" -l 0.0.0.0 -U 0 -c 1024
	app_wait_server "$port"
	app_measure_begin

	value="slim-$case-$RANDOM$RANDOM"
	printf '%s' "$value" >"$TMP/slimkey_$case"
	app_client memccp --servers="$dst:$port" "$TMP/slimkey_$case" || fail "case $case: memccp"
	assert_eq "$(app_client memccat --servers="$dst:$port" "slimkey_$case")" "$value" \
		"case $case: memccat value"

	mc_slap set
	mc_slap get
	sets=$(mc_stat cmd_set) hits=$(mc_stat get_hits)
	log "case $case: server counted cmd_set $sets, get_hits $hits"
	assert_ge "$sets" $((threads * runs + 1)) "case $case: cmd_set"
	assert_ge "$hits" $((threads * runs + 1)) "case $case: get_hits"

	# The server sees the client as its overlay address and itself as the pod's.
	conns=$(stats_conns)
	grep -q "addr tcp:$src:[0-9]" <<<"$conns" ||
		{ echo "$conns"; fail "case $case: stats conns lacks $src"; }
	grep -q "listen_addr tcp:$dst:$port" <<<"$conns" ||
		{ echo "$conns"; fail "case $case: stats conns lacks listen_addr $dst:$port"; }
	if grep ':addr tcp:' <<<"$conns" | grep -v "tcp:0.0.0.0:$port" | grep -qv "tcp:$src:"; then
		echo "$conns"
		fail "case $case: stats conns shows a peer other than $src"
	fi
	app_measure_end $((1 << 20))
	app_stop_server
done 3< <(app_cases client)

app_finish
