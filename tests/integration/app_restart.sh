#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A server that restarts is reachable at once: nginx in h2/p1 is restarted on the same port, shimmed
# (so its host listener gets a new port) or plain (so there is no host listener any more), while
# the client's router still remembers the old host listener. The first request after each restart
# must succeed, from a non-blocking connect (curl) and from a blocking one (bash's /dev/tcp).
# timeout: 180
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
[ ${#failures[@]} = 0 ] ||
	fail "first request after a restart failed: $(IFS=';'; echo "${failures[*]}")"
log "every first request after a restart succeeded"
