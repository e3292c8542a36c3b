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
#    request succeeds and the next download goes over slim, not the overlay;
#  - a stale route nothing corrects (written by hand into h1's kernel route map: a closed port
#    of h2): the refused connect is connected again before the app learns of it, non-blocking
#    (curl: poll's error bits; Python: epoll, then SO_ERROR) and blocking (bash), and the
#    download after it goes over slim.
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

# A stale route that nothing corrects: h1's kernel route for the server is overwritten by hand
# with a closed port of h2, so the next connect is refused by h2. Both kinds of connect must be
# connected again before the app learns of it: curl's non-blocking one learns the outcome from
# SO_ERROR, bash's blocking one from connect.
routes=/run/slim/$PREFIX/bpf/h1/slim_routes
route_key() {
	local a b c d
	IFS=. read -r a b c d <<<"$dst"
	printf '%02x %02x %02x %02x 00 00 00 00 %02x %02x 00 00' "$a" "$b" "$c" "$d" \
		$((port >> 8)) $((port & 255))
}
stale_route() {
	# 198.18.0.2 port 1, no flags, no expiry.
	# shellcheck disable=SC2046
	bpftool map update pinned "$routes" key hex $(route_key) \
		value hex c6 12 00 02 00 01 00 00 00 00 00 00 00 00 00 00 ||
		fail "could not write the stale route"
}
# route_port: the host port h1's kernel route for the server leads to (empty: no route).
route_port() {
	# shellcheck disable=SC2046
	bpftool -j map lookup pinned "$routes" key hex $(route_key) 2>/dev/null |
		jq -r '.value | if type == "array" then ((.[4] | ltrimstr("0x")) + (.[5] | ltrimstr("0x")))
			else (.rt_host_port | tostring) end' 2>/dev/null |
		{ read -r v && [[ $v =~ ^[0-9a-f]{4}$ ]] && echo $((16#$v)); }
}
stale_route
[ "$(route_port)" = 1 ] || fail "the stale route is not in h1's map ($(route_port))"
get_curl "a stale route (non-blocking connect)"
# The route was resolved again: it leads to the server's host listener, not port 1.
p=$(route_port)
[[ $p =~ ^[0-9]+$ ]] && [ "$p" != 1 ] || fail "h1's route after the retry: '$p'"
log "h1's route now leads to h2 port $p"
stale_route
get_bash "a stale route (blocking connect)"
# The event-loop way (asyncio, libuv, nginx): a non-blocking connect, epoll, then SO_ERROR.
cat >"$TMP/epoll_get.py" <<'EOF'
import selectors, socket, sys
s = socket.socket()
s.setblocking(False)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except BlockingIOError:
    pass
sel = selectors.EpollSelector()
sel.register(s, selectors.EVENT_WRITE)
sel.select(10)
err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
if err:
    sys.exit("SO_ERROR %d" % err)
s.setblocking(True)
s.sendall(b"GET /small.txt HTTP/1.0\r\nHost: slim\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.split(b"\r\n\r\n", 1)[1].decode().strip())
EOF
stale_route
got=$(app_client python3 "$TMP/epoll_get.py" "$dst" "$port" 2>&1) || true
if [ "$got" = "$body" ]; then
	log "a stale route (epoll + SO_ERROR): ok"
else
	log "a stale route (epoll + SO_ERROR) FAILED: $got"
	failures+=("a stale route (epoll + SO_ERROR)")
fi
stale_route
get_big "a stale route, then 8 MiB"
[ ${#failures[@]} = 0 ] ||
	fail "first request after a restart failed: $(IFS=';'; echo "${failures[*]}")"
log "every first request after a restart succeeded"
