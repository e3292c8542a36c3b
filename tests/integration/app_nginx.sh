#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# nginx across hosts (own config, everything in $TMP): curl fetches a 1 MB and a small file intact
# and sees its own and the server's overlay addresses; wrk with "Connection: close" runs 3 s
# without socket errors or non-2xx answers; the access log names the client by its overlay address
# 10.244.1.2 (the accept-side address mapping). Both ends shimmed it runs over host sockets; with
# only the client shimmed it works over the overlay.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/apps/app.sh"

need_cmd nginx curl wrk sha256sum
app_lab_up
dst=$(addr "$APP_SERVER")
src=$(addr "$APP_CLIENT")
base=8080

mkdir -p "$TMP/www"
head -c $((1 << 20)) /dev/urandom >"$TMP/www/big.bin"
echo "slim nginx small file $$" >"$TMP/www/small.txt"

sum() { sha256sum <"$1" | cut -d' ' -f1; }

# nginx_conf DIR: a config whose pid, logs and temp files all live in DIR.
nginx_conf() {
	local d=$1

	mkdir -p "$d"
	cat >"$d/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
user root;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
	access_log $d/access.log;
	client_body_temp_path $d/body;
	proxy_temp_path $d/proxy;
	fastcgi_temp_path $d/fastcgi;
	uwsgi_temp_path $d/uwsgi;
	scgi_temp_path $d/scgi;
	default_type application/octet-stream;
	server {
		listen $port;
		root $TMP/www;
	}
}
CONF
}

while read -r case srv cli idx <&3; do
	app_case "$case" "$srv" "$cli" "$idx"
	port=$((base + idx))
	d=$TMP/nginx_$case
	nginx_conf "$d"
	nginx -t -q -e "$d/error.log" -p "$d" -c "$d/nginx.conf" ||
		fail "nginx -t: $(cat "$d/error.log")"
	app_server nginx nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
	app_wait_server "$port"
	app_measure_begin

	# curl also reports its socket's addresses (getsockname/getpeername): the overlay ones.
	for f in big.bin small.txt; do
		ends=$(app_client curl -sS --max-time 20 -o "$TMP/got_$f" \
			-w '%{local_ip} %{remote_ip}:%{remote_port}' "http://$dst:$port/$f") ||
			fail "case $case: curl $f failed"
		assert_eq "$(sum "$TMP/got_$f")" "$(sum "$TMP/www/$f")" "case $case: $f sha256"
		assert_eq "$ends" "$src $dst:$port" "case $case: curl's local and remote address"
	done

	out=$TMP/wrk_$case.log
	app_client wrk -t 2 -c 16 -d 3s --timeout 5s -H "Connection: close" \
		"http://$dst:$port/small.txt" >"$out" 2>&1 ||
		{ cat "$out"; fail "case $case: wrk failed"; }
	reqs=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$out")
	rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$out")
	log "case $case: wrk $reqs requests, $rps requests/s"
	[ -n "$reqs" ] || { cat "$out"; fail "case $case: no wrk summary"; }
	assert_ge "$reqs" 100 "case $case: wrk requests"
	if grep -E 'Socket errors|Non-2xx' "$out"; then
		fail "case $case: wrk saw errors"
	fi
	app_measure_end $((1 << 20))

	# Every request came from the client pod's overlay address, none from a host address.
	lines=$(wc -l <"$d/access.log")
	from_client=$(awk -v a="$src" '$1 == a' "$d/access.log" | wc -l)
	log "case $case: access log $lines lines, $from_client from $src"
	assert_ge "$lines" $((reqs + 2)) "case $case: access log lines"
	assert_eq "$from_client" "$lines" "case $case: access log lines from $src"
	app_stop_server
done 3< <(app_cases client)

app_finish
