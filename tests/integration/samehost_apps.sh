#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Real applications over the same-host fast path: server in h1/p1, client in h1/p2, both shimmed,
# router with sockmap. nginx with "sendfile on" serves a 1 MiB and a small file (curl checks their
# sha256, five times each over one keep-alive connection and over fresh ones); redis SET/GET of a
# short and a 200 kB value; memcached set/get. For every app the router's redirected-send counter
# must grow, and the host's lo (which carries the host sockets' bytes when they go the TCP way)
# must carry only a small part of what the app moved.
# timeout: 180
. "$(dirname "$0")/../lib.sh"

[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
need_cmd jq nginx curl sha256sum redis-server redis-cli memcached memccp memccat
lab_up --hosts 1 --pods 2 >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "slimlab up"; }
srv=$(addr h1/p1)
cli=$(addr h1/p2)
problems=()
problem() { log "problem: $*"; problems+=("$*"); }

ctl() { "$BIN/slimctl" -s "/run/slim/$PREFIX/h1/router.sock" "$@"; }
[ "$(ctl --json status | jq -r .fastpath.enabled)" = true ] || fail "the router's fast path is off"
redirected() { ctl --json status | jq -r .fastpath.redirected; }
lo_tx() { in_ns h1 ip -s -j link show lo | jq '.[0].stats64.tx.bytes'; }
host_listener() {
	ctl --json listeners | jq -e --arg o "$srv:$1" '.listeners | any(.overlay == $o)'
}
# measure_begin / measure_end APP MIN_APP_BYTES: the counters around one application's traffic.
measure_begin() { r0=$(redirected) lo0=$(lo_tx); }
measure_end() {
	local r1 lo1
	r1=$(redirected) lo1=$(lo_tx)
	log "$1: $((r1 - r0)) sends redirected, lo carried $((lo1 - lo0)) bytes (app moved >= $2)"
	[ $((r1 - r0)) -gt 0 ] || problem "$1: no send was redirected"
	[ $((lo1 - lo0)) -lt $(($2 / 10)) ] ||
		problem "$1: lo carried $((lo1 - lo0)) bytes of >= $2: the bytes went the TCP way"
}
sum() { sha256sum <"$1" | cut -d' ' -f1; }

log "nginx, sendfile on"
mkdir -p "$TMP/www" "$TMP/nginx"
head -c $((1 << 20)) /dev/urandom >"$TMP/www/big.bin"
echo "slim same-host small file $$" >"$TMP/www/small.txt"
cat >"$TMP/nginx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
user root;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path $TMP/nginx/body;
	proxy_temp_path $TMP/nginx/proxy;
	fastcgi_temp_path $TMP/nginx/fastcgi;
	uwsgi_temp_path $TMP/nginx/uwsgi;
	scgi_temp_path $TMP/nginx/scgi;
	default_type application/octet-stream;
	server {
		listen 8080;
		root $TMP/www;
	}
}
CONF
nginx -t -q -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" ||
	fail "nginx -t: $(cat "$TMP/nginx/error.log")"
bg nginx h1/p1 --slim nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
wait_for 10 listening h1/p1 8080
wait_for 10 host_listener 8080
measure_begin
for f in big.bin small.txt; do
	# Five fetches over one keep-alive connection, then five on fresh connections.
	urls=() outs=()
	for i in 1 2 3 4 5; do urls+=("http://$srv:8080/$f") outs+=(-o "$TMP/got_${f}_$i"); done
	ends=$(in_slim h1/p2 curl -sS --max-time 20 -w '%{local_ip} %{remote_ip}:%{remote_port}\n' \
		"${outs[@]}" "${urls[@]}" | sort -u) || fail "curl $f (keep-alive) failed"
	assert_eq "$ends" "$cli $srv:8080" "curl's local and remote address"
	for i in 1 2 3 4 5; do
		assert_eq "$(sum "$TMP/got_${f}_$i")" "$(sum "$TMP/www/$f")" "sha256 of $f (keep-alive, $i)"
		in_slim h1/p2 curl -sS --max-time 20 -o "$TMP/got_$f" "http://$srv:8080/$f" ||
			fail "curl $f (fresh connection $i) failed"
		assert_eq "$(sum "$TMP/got_$f")" "$(sum "$TMP/www/$f")" "sha256 of $f (fresh, $i)"
	done
done
measure_end nginx $((10 << 20))
[ ! -s "$TMP/nginx/error.log" ] || { log "nginx error.log:"; sed 's/^/  /' "$TMP/nginx/error.log"; }

log "redis"
mkdir -p "$TMP/redis"
bg redis h1/p1 --slim redis-server --port 6379 --bind 0.0.0.0 --protected-mode no --save '' \
	--appendonly no --dir "$TMP/redis" --logfile '' --daemonize no
wait_for 10 listening h1/p1 6379
wait_for 10 host_listener 6379
rcli() { in_slim h1/p2 redis-cli -h "$srv" -p 6379 "$@"; }
measure_begin
value="v-$RANDOM$RANDOM"
assert_eq "$(rcli SET slimkey "$value")" OK "redis SET"
assert_eq "$(rcli GET slimkey)" "$value" "redis GET"
head -c 150000 /dev/urandom | base64 -w0 >"$TMP/bigval"
assert_eq "$(rcli -x SET bigkey <"$TMP/bigval")" OK "redis SET of 200 kB"
for i in 1 2 3 4 5; do
	rcli GET bigkey | tr -d '\n' >"$TMP/got_bigval"
	assert_eq "$(sum "$TMP/got_bigval")" "$(sum "$TMP/bigval")" "redis GET of 200 kB ($i)"
done
clients=$(rcli CLIENT LIST)
grep -q "addr=$cli:[0-9]* laddr=$srv:6379 " <<<"$clients" ||
	problem "redis CLIENT LIST does not show $cli -> $srv:6379: $clients"
measure_end redis $((5 * 200000))

log "memcached"
bg memcached h1/p1 --slim memcached -u root -p 11211 -l 0.0.0.0 -U 0 -c 1024
wait_for 10 listening h1/p1 11211
wait_for 10 host_listener 11211
measure_begin
for n in 1 2 3; do
	head -c $((n * 200000)) /dev/urandom | base64 -w0 >"$TMP/slimkey$n"
	in_slim h1/p2 memccp --servers="$srv:11211" "$TMP/slimkey$n" || fail "memccp slimkey$n"
	in_slim h1/p2 memccat --servers="$srv:11211" "slimkey$n" >"$TMP/got_slimkey$n" ||
		fail "memccat slimkey$n"
	tr -d '\n' <"$TMP/got_slimkey$n" >"$TMP/got_slimkey$n.v"
	assert_eq "$(sum "$TMP/got_slimkey$n.v")" "$(sum "$TMP/slimkey$n")" "memcached get slimkey$n"
done
measure_end memcached $((2 * 1600000))

if [ ${#problems[@]} -gt 0 ]; then
	fail "${#problems[@]} problem(s): $(printf '%s; ' "${problems[@]}")"
fi
log "all checks passed"
