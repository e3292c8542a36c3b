#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The same-host fast path keeps TCP semantics, and really is taken. The same assertions run in two
# labs of one host: one whose router redirects with sockmap ("sockmap") and one started with
# --no-sockmap ("tcp"). Server in h1/p1, client in h1/p2, both shimmed, in each lab:
#  - tests/progs/samehost_check: byte streams 1 B .. 16 MiB echoed with random write and read
#    splits, half-close both ways, a send after SHUT_WR (EPIPE, nothing reaches the peer after
#    EOF), close with unread data both ways (a reset, as TCP gives; none while a dup or a
#    child still holds the connection), poll / epoll LT / epoll ET
#    readiness on both ends, EAGAIN within 16 MiB then an edge-triggered EPOLLOUT
#    (backpressure) both ways;
#    every case must pass, and pass without the shim (the control, run once);
#  - the semantics suite (tests/progs/semantics "all"), compared case by case with the control;
#  - proof of the path: the host's lo (the host sockets' device: both ends are 198.18.0.1)
#    carries the stream bytes in the tcp lab and little in the sockmap lab (only the fill cases,
#    flow-controlled, go the TCP way once their reader is behind); the router's
#    .fastpath.redirected counter grows only in the sockmap lab; a held connection shows
#    "accelerated" (PATH sockmap) only there; neither lab sends the bytes over the pod's eth0.
# timeout: 240
. "$(dirname "$0")/../lib.sh"

CHK=$PROGS/samehost_check
SEM=$PROGS/semantics
[ -x "$CHK" ] && [ -x "$SEM" ] || skip "build/tests/progs/samehost_check or semantics is not built"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
need_cmd jq ss
problems=()
problem() { log "problem: $*"; problems+=("$*"); }

ctl() { "$BIN/slimctl" -s "/run/slim/$PREFIX/h1/router.sock" "$@"; }
fastpath() { ctl --json status | jq -r ".fastpath.$1 // 0"; }
# lo_tx: bytes the host h1 sent over lo (the host sockets' device). pod_tx: the client pod's eth0.
lo_tx() { in_ns h1 ip -s -j link show lo | jq '.[0].stats64.tx.bytes'; }
pod_tx() { in_ns h1/p2 ip -s -j link show eth0 | jq '.[0].stats64.tx.bytes + .[0].stats64.rx.bytes'; }
started() { grep -q '^listening' "$TMP/$1.log"; }
# host_listener OVERLAY-PORT: the router knows the shimmed server's host listener.
host_listener() {
	ctl --json listeners | jq -e --arg o "$srv:$1" '.listeners | any(.overlay == $o)'
}

# verdict LABEL LINE: a failed case is a problem, in both labs alike. (Redirected sends are
# flow-controlled, so the fill cases must see EAGAIN within 16 MiB with sockmap too.)
verdict() { problem "[$1] $2"; }

# run_lab LABEL [slimlab up options]: the whole set of assertions in a fresh one-host lab.
run_lab() {
	local label=$1 lo0 lo1 pod0 pod1 r0 r1 held
	shift
	lab_up --hosts 1 --pods 2 "$@" >"$TMP/up_$label.log" 2>&1 ||
		{ cat "$TMP/up_$label.log"; fail "slimlab up $*"; }
	srv=$(addr h1/p1)
	bg "chk_$label" h1/p1 --slim "$CHK" server 9000
	bg "sem_$label" h1/p1 --slim "$SEM" server 8000
	for s in "chk_$label" "sem_$label"; do wait_for 10 started "$s"; done
	wait_for 10 host_listener 9000
	wait_for 10 host_listener 8000
	if [ "$label" = sockmap ]; then
		# The control: the same programs without the shim, over the pod network.
		bg chk_control h1/p1 "$CHK" server 9100
		bg sem_control h1/p1 "$SEM" server 10000
		for s in chk_control sem_control; do wait_for 10 started "$s"; done
		in_ns h1/p2 timeout 100 "$CHK" client "$srv" 9100 all >"$TMP/chk_control.out" 2>&1 || true
		sed 's/^/  control: /' "$TMP/chk_control.out"
		if grep -q '^not ok' "$TMP/chk_control.out"; then
			problem "samehost_check fails without the shim"
		fi
		in_ns h1/p2 timeout 150 "$SEM" client "$srv" 10000 all >"$TMP/sem_control.out" \
			2>"$TMP/sem_control.err" || true
	fi

	log "[$label] samehost_check, both ends shimmed (h1/p2 -> h1/p1)"
	lo0=$(lo_tx) pod0=$(pod_tx) r0=$(fastpath redirected)
	in_slim h1/p2 timeout 100 "$CHK" client "$srv" 9000 all >"$TMP/chk_$label.out" 2>&1 || true
	lo1=$(lo_tx) pod1=$(pod_tx) r1=$(fastpath redirected)
	sed "s/^/  $label: /" "$TMP/chk_$label.out"
	while read -r line; do verdict "$label" "$line"; done < <(grep '^not ok' "$TMP/chk_$label.out")
	grep -q '^ok rfill' "$TMP/chk_$label.out" || grep -q '^not ok rfill' "$TMP/chk_$label.out" ||
		problem "[$label] samehost_check did not finish: $(tail -n1 "$TMP/chk_$label.out")"
	# Verdicts only the server saw (half-close reply, unread data on the client's close).
	wait_for 10 grep -q '^server .*ok unread_peer' "$TMP/chk_$label.log"
	grep '^server ok unread_peer' "$TMP/chk_$label.log" | sed "s/^/  $label: /"
	while read -r line; do verdict "$label" "$line"; done < <(grep '^server not ok' "$TMP/chk_$label.log")
	log "[$label] lo carried $((lo1 - lo0)) bytes, the client pod's eth0 $((pod1 - pod0))," \
		"the router redirected $((r1 - r0)) sends"
	# The stream and ready cases alone move more than 60 MB each way.
	[ $((pod1 - pod0)) -lt 1000000 ] ||
		problem "[$label] the client pod's eth0 carried $((pod1 - pod0)) bytes: not host sockets"
	if [ "$label" = sockmap ]; then
		# The fill cases do go the TCP way once their reader is behind (flow control: a send
		# buffer and a window each, a few MiB); the stream and ready cases must not.
		[ $((lo1 - lo0)) -lt 20000000 ] ||
			problem "[sockmap] lo carried $((lo1 - lo0)) bytes: the data went the TCP way"
		[ $((r1 - r0)) -ge 1000 ] ||
			problem "[sockmap] the router counted only $((r1 - r0)) redirected sends"
	else
		[ $((lo1 - lo0)) -ge 60000000 ] ||
			problem "[tcp] lo carried only $((lo1 - lo0)) bytes: the lo check is blind"
		[ $((r1 - r0)) = 0 ] || problem "[tcp] the router counted $((r1 - r0)) redirected sends"
		[ "$(ctl --json status | jq -r .fastpath.enabled)" = false ] ||
			problem "[tcp] the router says the fast path is on"
	fi

	log "[$label] semantics suite, both ends shimmed, against the control without the shim"
	k0=$(ctl --json status | jq '.governance.kernel | .connect_ok + .accept_ok')
	in_slim h1/p2 timeout 150 "$SEM" client "$srv" 8000 all >"$TMP/sem_$label.out" \
		2>"$TMP/sem_$label.err" || true
	"$SEM" compare "$TMP/sem_control.out" "$TMP/sem_$label.out" | sed "s/^/  $label: /" ||
		problem "[$label] semantics: cases that pass without the shim fail with it (above)"
	# And it took the slim path: governed connects and identified accepts, hundreds of them.
	k1=$(ctl --json status | jq '.governance.kernel | .connect_ok + .accept_ok')
	log "[$label] the suite made $((k1 - k0)) governed connects and identified accepts"
	[ $((k1 - k0)) -ge 200 ] || problem "[$label] semantics: the suite did not take the slim path"

	log "[$label] a held connection: its PATH"
	bg "hold_$label" h1/p2 --slim "$SEM" client --wait-file "$TMP/go_$label" "$srv" 8000 hold,wait
	wait_for 15 grep -q '^ok hold' "$TMP/hold_$label.log"
	held=$(ctl --json conns | jq -c '[.conns[] | select(.overlay_dst == "'"$srv"':8000") | .accelerated]')
	ctl conns | sed "s/^/  $label: /"
	if [ "$label" = sockmap ]; then
		jq -e 'length > 0 and all(. == true)' <<<"$held" >/dev/null ||
			problem "[sockmap] held connection not accelerated: $held"
		[ "$(fastpath entries)" -ge 2 ] ||
			problem "[sockmap] $(fastpath entries) sockhash entries while a connection is held"
	else
		jq -e 'length > 0 and all(. == false)' <<<"$held" >/dev/null ||
			problem "[tcp] held connection: accelerated flags $held"
	fi
	touch "$TMP/go_$label.1"
	wait_for 20 grep -Eq '^(not )?ok wait' "$TMP/hold_$label.log"
	grep -q '^ok wait' "$TMP/hold_$label.log" ||
		problem "[$label] held connection: $(tail -n1 "$TMP/hold_$label.log")"

	# Processes outlive their namespace: stop them before the lab goes.
	for s in "chk_$label" "sem_$label" "hold_$label" chk_control sem_control; do
		if [ -n "$(eval echo "\${PID_$s:-}")" ]; then kill_tree "$(eval echo "\$PID_$s")"; fi
	done
	"$SLIMLAB" down --prefix "$PREFIX" >/dev/null 2>&1
}

start=$(date +%s)
run_lab sockmap
run_lab tcp --no-sockmap
log "took $(($(date +%s) - start)) s"
# A socket closed with unread redirected bytes resets its connection as TCP's does (the shim
# arms it: tcp_close does not count the sockmap queue), and only on the last close (unread_dup,
# unread_fork): shown for both labs, checked by samehost_check (ECONNRESET, not EOF).
for l in sockmap tcp; do
	log "[$l] close with unread data: $(sed -n 's/^ok unread # //p' "$TMP/chk_$l.out")"
done

if [ ${#problems[@]} -gt 0 ]; then
	fail "${#problems[@]} problem(s): $(printf '%s; ' "${problems[@]}")"
fi
log "all checks passed"
