# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# What the real-application scenarios (tests/integration/app_*.sh) share: the run cases (both ends
# shimmed, one end shimmed, no shim), starting the server and client of a case in the right mode,
# and the check that a case's bytes took the path it should have (host sockets or the overlay).
# Source it after tests/lib.sh. The server runs in pod h2/p1, the client in pod h1/p1.
# APP_SLIM=0 runs only the overlay case even when slim is built (the scenario then skips).
#
# The path check compares two byte counters of host h1 over the client's traffic: flannel.1 (the
# VXLAN device: everything the overlay carried) and eth0 (the fabric: everything that left or
# reached the host, VXLAN packets included). Over the overlay, flannel.1 sees nearly all of eth0's
# bytes; over slim's host sockets it sees almost none. A sampler also records the host-namespace
# TCP connections between 198.18.0.1 and 198.18.0.2 (router-to-router ones excluded), which exist
# only when the app's connections are slim host sockets.

APP_SERVER=h2/p1
APP_CLIENT=h1/p1
APP_PEER_PORT=7471 # routers' fabric port: their own connections are not the app's
# Over slim at most this percentage of the fabric bytes may cross the overlay; over the overlay at
# least the second one must (small packets put it near 55%, bulk transfers near 99%).
APP_SLIM_MAX_PCT=${APP_SLIM_MAX_PCT:-2}
APP_OVERLAY_MIN_PCT=${APP_OVERLAY_MIN_PCT:-40}
APP_CASES_RUN=()

# app_lab_up: brings the lab up with routers when the shim and the router are built (APP_SLIM=0
# forces an overlay-only run), and sets APP_HAVE_SLIM to 1 or 0.
app_lab_up() {
	local opts=()

	APP_HAVE_SLIM=0
	if [ "${APP_SLIM:-1}" != 0 ] && [ -f "$TOP/build/lib/libslim.so" ] &&
		[ -x "$BIN/slimrouterd" ]; then
		APP_HAVE_SLIM=1
	else
		opts=(--no-slim)
	fi
	lab_up "${opts[@]}" >"$TMP/lab.log" 2>&1 ||
		{ cat "$TMP/lab.log"; fail "slimlab up ${opts[*]}"; }
}

# app_cases ONE_END: the cases this run covers, as "name server client index" lines. ONE_END says
# which end is shimmed alone (server or client). Without slim only the plain overlay case runs.
# Each case's server listens on its own port (base port + index): a case must not depend on what
# the routers remember of the previous one (app_restart.sh tests that on purpose). Scenarios read
# the list on fd 3 (while read ... <&3; done 3< <(app_cases ...)), so that no command of a case
# can swallow the next case from stdin.
app_cases() {
	if [ "$APP_HAVE_SLIM" = 0 ]; then
		echo "overlay plain plain 0"
		return
	fi
	echo "slim slim slim 0"
	if [ "$1" = server ]; then
		echo "srvslim slim plain 1"
	else
		echo "clislim plain slim 1"
	fi
}

# app_case NAME SERVER CLIENT INDEX: starts a case; SERVER and CLIENT are "slim" or "plain". The
# path the case must take: slim when both ends are shimmed, else the overlay.
app_case() {
	APP_CASE=$1 APP_SRV=$2 APP_CLI=$3 APP_INDEX=${4:-0}
	APP_CASES_RUN+=("$1")
	[ "$2" = slim ] && [ "$3" = slim ] && APP_PATH=slim || APP_PATH=overlay
	log "case $APP_CASE: server $APP_SRV, client $APP_CLI, expected path $APP_PATH"
}

# app_server NAME CMD...: runs the case's server in the server pod in the background
# (bg NAME_<case>; its output is in $TMP/NAME_<case>.log).
app_server() {
	local name=${1}_$APP_CASE slim=()
	shift
	[ "$APP_SRV" != slim ] || slim=(--slim)
	bg "$name" "$APP_SERVER" "${slim[@]}" "$@"
	APP_SERVER_PID=$(eval echo "\$PID_$name")
	APP_SERVER_LOG=$TMP/$name.log
}

# app_client CMD...: runs CMD in the client pod, shimmed or not as the case says.
app_client() {
	if [ "$APP_CLI" = slim ]; then
		in_slim "$APP_CLIENT" "$@"
	else
		in_ns "$APP_CLIENT" "$@"
	fi
}

# app_wait_server PORT: waits until the server listens on PORT in its pod and, when it is shimmed,
# until its host listener exists too (else an early client would fall back to the overlay).
app_wait_server() {
	local deadline

	wait_for 20 _app_server_listening "$1"
	[ "$APP_SRV" = slim ] || return 0
	deadline=$(($(date +%s) + 5))
	until _app_host_listener; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			log "pod listeners: $(_app_listeners "$APP_SERVER")"
			log "host listeners: $(_app_listeners h2)"
			fail "case $APP_CASE: the shimmed server listens on port $1 in its pod" \
				"but got no host listener in h2"
		fi
		sleep 0.05
	done
}
_app_server_listening() {
	kill -0 "$APP_SERVER_PID" 2>/dev/null ||
		fail "server exited early: $(tail -n 5 "$APP_SERVER_LOG")"
	listening "$APP_SERVER" "$1"
}
_app_listeners() { in_ns "$1" ss -Htln | awk '{print $4}' | xargs; }
# Any listener in h2 but the router's own (h2 runs nothing else).
_app_host_listener() {
	in_ns h2 ss -Htln | awk -v pp=":$APP_PEER_PORT" '$4 !~ pp"$"' | grep -q .
}

# app_stop_server: ends the case's server and waits until it is gone.
app_stop_server() {
	kill_tree "$APP_SERVER_PID"
	wait_for 15 _app_gone "$APP_SERVER_PID"
}
_app_gone() { ! kill -0 "$1" 2>/dev/null; }

# The h1 counters: flannel.1 tx+rx bytes, eth0 tx+rx bytes.
_app_counters() {
	local s=/sys/class/net

	in_ns h1 cat $s/flannel.1/statistics/tx_bytes $s/flannel.1/statistics/rx_bytes \
		$s/eth0/statistics/tx_bytes $s/eth0/statistics/rx_bytes |
		awk '{v[NR] = $1} END {printf "%.0f %.0f\n", v[1] + v[2], v[3] + v[4]}'
}

# Samples h1's host TCP connections to h2 (routers' own excluded) every 100 ms into $1.
_app_watch() {
	while :; do
		in_ns h1 ss -Htn 2>/dev/null | awk -v pp="$APP_PEER_PORT" '
			{ split($4, l, ":"); split($5, r, ":") }
			l[1] == "198.18.0.1" && r[1] == "198.18.0.2" && l[2] != pp && r[2] != pp
		' >>"$1"
		sleep 0.1
	done
}

# app_measure_begin: call right before the client's traffic.
app_measure_begin() {
	read -r APP_FL0 APP_ETH0 < <(_app_counters)
	APP_WATCH_FILE=$TMP/hostconns.$APP_CASE
	: >"$APP_WATCH_FILE"
	_app_watch "$APP_WATCH_FILE" &
	APP_WATCH_PID=$!
	cleanup _app_watch_stop
}
# Stops the sampler if it still runs (cleanup runs this too, so no stale pid is ever killed).
_app_watch_stop() {
	[ -n "${APP_WATCH_PID:-}" ] || return 0
	kill "$APP_WATCH_PID" 2>/dev/null
	wait "$APP_WATCH_PID" 2>/dev/null
	APP_WATCH_PID=
}

# app_measure_end MIN_BYTES: call right after the client's traffic. Fails unless at least
# MIN_BYTES crossed the fabric and they took the case's path.
app_measure_end() {
	local min=$1 fl1 eth1 fl eth pct conns c="case $APP_CASE"

	_app_watch_stop || true
	read -r fl1 eth1 < <(_app_counters)
	fl=$((fl1 - APP_FL0)) eth=$((eth1 - APP_ETH0))
	conns=$(awk '{print $4 "-" $5}' "$APP_WATCH_FILE" | sort -u | wc -l)
	pct=$(awk -v f="$fl" -v e="$eth" 'BEGIN { printf "%.2f", e ? 100 * f / e : 0 }')
	log "$c: fabric $eth bytes, overlay $fl bytes ($pct%), $conns host connection(s) seen"
	[ "$eth" -ge "$min" ] || fail "$c: only $eth bytes crossed the fabric, expected >= $min"
	if [ "$APP_PATH" = slim ]; then
		awk -v p="$pct" -v m="$APP_SLIM_MAX_PCT" 'BEGIN { exit !(p <= m) }' ||
			fail "$c: $pct% of the fabric bytes went over the overlay (flannel.1)," \
				"expected <= $APP_SLIM_MAX_PCT%: slim fell back"
		[ "$conns" -gt 0 ] ||
			fail "$c: no host connection 198.18.0.1 <-> 198.18.0.2 seen in h1" \
				"while the client ran"
	else
		awk -v p="$pct" -v m="$APP_OVERLAY_MIN_PCT" 'BEGIN { exit !(p >= m) }' ||
			fail "$c: only $pct% of the fabric bytes went over the overlay," \
				"expected >= $APP_OVERLAY_MIN_PCT%"
		[ "$conns" = 0 ] ||
			fail "$c: host connections seen although one end is not shimmed:" \
				"$(head -n 3 "$APP_WATCH_FILE")"
	fi
}

# app_finish: the scenario's verdict once every case passed: without slim that is a skip, because
# only the overlay (the lab and the app itself) was tested.
app_finish() {
	if [ "$APP_HAVE_SLIM" = 1 ]; then
		log "all cases passed: ${APP_CASES_RUN[*]}"
		exit 0
	fi
	skip "overlay case passed; slim cases not run" \
		"(build/lib/libslim.so or build/bin/slimrouterd missing, or APP_SLIM=0)"
}
