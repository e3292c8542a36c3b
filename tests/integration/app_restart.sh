#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A server that restarts is reachable at once: nginx in h2/p1 is restarted on the same port, shimmed
# (so its host listener gets a new port) or plain (so there is no host listener any more), while
# the client's router still remembers the old host listener. The first request after each restart
# must succeed, from a non-blocking connect (curl) and from a blocking one (bash's /dev/tcp).
# Then the routes must heal where no INVALIDATE can reach the client's router (issue 12):
#  - h2's router is killed and restarted (slimlab router restart) and the server restarts with
#    it: the first request succeeds, non-blocking and blocking, and an 8 MiB download right
#    after goes over slim;
#  - the server stops (a request is refused, as over the overlay) and comes back: the first
#    request succeeds and the next download goes over slim, not the overlay.
# timeout: 240
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/apps/app.sh"

need_cmd nginx curl
app_lab_up
[ "$APP_HAVE_SLIM" = 1 ] ||
	skip "needs the shim and the router (build/lib/libslim.so, build/bin/slimrouterd)"
dst=$(addr "$APP_SERVER")
port=8090

mkdir -p "$TMP/www"
echo "restart check $$" >"$TMP/www/small.txt"
body=$(cat "$TMP/www/small.txt")
# Long enough for the path check (app_measure_end) to see it.
head -c $((8 << 20)) /dev/urandom >"$TMP/www/big.bin"
bigsum=$(md5sum <"$TMP/www/big.bin")

cat >"$TMP/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path $TMP/body;
	proxy_temp_path $TMP/proxy;
	fastcgi_temp_path $TMP/fastcgi;
	uwsgi_temp_path $TMP/uwsgi;
	scgi_temp_path $TMP/scgi;
	server { listen $port; root $TMP/www; }
}
CONF

# start CASE SERVER: (re)starts nginx, shimmed or plain, after stopping the previous one.
start() {
	[ -z "${APP_SERVER_PID:-}" ] || app_stop_server
	app_case "$1" "$2" slim
	app_server nginx nginx -e "$TMP/error.log" -p "$TMP" -c "$TMP/nginx.conf"
	app_wait_server $port
}

# get_curl / get_bash WHAT: one request, which must return the file. A failure is recorded and
# the sequence goes on, so one run shows every restart kind that breaks.
failures=()
get_curl() {
	local got
	if got=$(app_client curl -sS --max-time 10 "http://$dst:$port/small.txt" 2>&1) &&
		[ "$got" = "$body" ]; then
		log "$1: curl ok"
	else
		log "$1: curl (non-blocking connect) FAILED: $got"
		failures+=("$1 (curl)")
	fi
}
get_bash() {
	local got
	if got=$(app_client timeout 10 bash -c "exec 3<>/dev/tcp/$dst/$port &&
		printf 'GET /small.txt HTTP/1.0\r\nHost: slim\r\n\r\n' >&3 && cat <&3" 2>&1) &&
		[ "$(tail -n1 <<<"$got")" = "$body" ]; then
		log "$1: bash /dev/tcp ok"
	else
		log "$1: bash /dev/tcp (blocking connect) FAILED: $got"
		failures+=("$1 (/dev/tcp)")
	fi
}

# get_big WHAT: the 8 MiB file by curl, whole, over the case's path (app_measure_end). Its reader
# starts 1.5 s late, so curl waits on the pipe with the connection open: long enough for the path
# check's sampler (an ss in h1 every 100 ms, plus the time slimlab exec takes) to see it.
get_big() {
	local sum
	app_measure_begin
	sum=$(app_client curl -sS --max-time 20 "http://$dst:$port/big.bin" | { sleep 1.5; md5sum; })
	[ "$sum" = "$bigsum" ] || fail "$1: the 8 MiB download came back different"
	app_measure_end $((8 << 20))
	log "$1: 8 MiB over $APP_PATH"
}
# router_restart: kill -9 h2's router and start it again; the server is restarted after it.
router_restart() {
	"$SLIMLAB" router restart --prefix "$PREFIX" h2 >>"$TMP/router_restart.log" 2>&1 ||
		fail "slimlab router restart h2: $(tail -n 5 "$TMP/router_restart.log")"
}

start first slim
get_curl "first start (fills the client router's cache)"
start again slim
get_curl "restarted shimmed, new host listener"
start third slim
get_bash "restarted shimmed, new host listener"
start plain1 plain
get_curl "restarted without the shim, no host listener"
start fourth slim
get_curl "restarted shimmed again"
start plain2 plain
get_bash "restarted without the shim, no host listener"

start fifth slim
get_curl "before the router restart (fills the cache)"
router_restart
start sixth slim
get_curl "router and server restarted"
get_big "router and server restarted"
router_restart
start seventh slim
get_bash "router and server restarted again"

# Refused while nobody listens (the overlay refuses too), then back: over slim at once.
app_stop_server
if out=$(app_client curl -sS --max-time 10 "http://$dst:$port/small.txt" 2>&1); then
	fail "a request succeeded while no server ran: $out"
fi
log "no server: refused as over the overlay ($out)"
start eighth slim
get_curl "listening again after refused requests"
get_big "listening again after refused requests"
[ ${#failures[@]} = 0 ] ||
	fail "first request after a restart failed: $(IFS=';'; echo "${failures[*]}")"
log "every first request after a restart succeeded"
