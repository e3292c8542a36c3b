#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The shim keeps POSIX socket semantics: the suite in tests/progs/semantics.c with a client in
# h1/p1 and a server in h2/p1, both shimmed, compared case by case with the same suite run
# without the shim over the overlay (the control: every case that passes there must pass with
# the shim). Also: both ends on one host; slow connects (every second SYN dropped: EALREADY,
# EINTR, SA_RESTART, SO_SNDTIMEO); the shimmed server reached from inside its own pod
# (127.0.0.1) and from a non-shimmed pod; a shimmed server bound to its pod IP; a shimmed client
# connecting to a fabric address. And proof that slim carried the connections: the host 4-tuple
# shows in the host's ss (not in the pod's), and a 50 MB transfer leaves flannel.1's byte
# counters almost unchanged (the control's moves all 50 MB through it).
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/semantics.sh"

[ -x "$SEM" ] || skip "build/tests/progs/semantics is not built"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
need_cmd jq ss
lab_up
srv=$(addr h2/p1)
h1=$(addr h1)
problems=()


# Servers, ports 2000 apart (each uses PORT+1..PORT+950 for its per-case listeners).
bg srv_slim h2/p1 --slim "$SEM" server 8000
bg srv_plain h2/p1 "$SEM" server 10000
bg srv_podip h2/p1 --slim "$SEM" server --bind "$srv" 12000
bg srv_fabric h1 "$SEM" server --bind "$h1" 14000
for s in srv_slim srv_plain srv_podip srv_fabric; do wait_for 10 started $s; done

S1=/run/slim/$PREFIX/h1/router.sock S2=/run/slim/$PREFIX/h2/router.sock

log "both ends shimmed, h1/p1 -> h2/p1, against the control without the shim"
suite control h1/p1 "$srv" 10000 all
slim_mark "$S1" "$S2"
suite slim h1/p1 --slim "$srv" 8000 all
check control slim "both ends shimmed"
slim_took "both ends shimmed" "$S1" "$S2"

log "both ends shimmed, two pods of one host (h2/p2 -> h2/p1)"
slim_mark "$S2"
suite same_host h2/p2 --slim "$srv" 8000 all
check control same_host "both ends shimmed, same host"
slim_took "both ends shimmed, same host" "$S2" "$S2"

log "slow connects: every second SYN towards h2 dropped (its INPUT for slim, FORWARD for the overlay)"
cleanup "$SLIMLAB exec --prefix $PREFIX h2 -- nft delete table inet slimsem"
in_ns h2 nft -f - <<'EOF_NFT'
table inet slimsem {
	chain input {
		type filter hook input priority 0;
		tcp dport != 7471 tcp flags & (syn | ack) == syn numgen inc mod 2 == 0 drop
	}
	chain forward {
		type filter hook forward priority 0;
		tcp flags & (syn | ack) == syn numgen inc mod 2 == 0 drop
	}
}
EOF_NFT
slow=slow_nonblock,slow_eintr,slow_restart,slow_sndtimeo
suite slow_control h1/p1 "$srv" 10000 "$slow"
suite slow h1/p1 --slim "$srv" 8000 "$slow"
in_ns h2 nft delete table inet slimsem
check slow_control slow "slow connects"

sub=connect_block,connect_nonblock,refused_block,whoami,srv_block,srv_accept4,srv_eagain,srv_epoll
sub=$sub,srv_epoll_et,srv_poll,srv_select,srv_addrlen,epoll_lt,threads
log "shimmed server from inside its pod (127.0.0.1) and from a non-shimmed pod"
suite local_control h2/p1 127.0.0.1 10000 "$sub"
slim_mark "$S2"
suite local h2/p1 --slim 127.0.0.1 8000 "$sub"
check local_control local "in-pod client on 127.0.0.1"
slim_took "in-pod client on 127.0.0.1" "$S2" "$S2"
suite other_control h1/p2 "$srv" 10000 "$sub"
suite other h1/p2 "$srv" 8000 "$sub"
check other_control other "non-shimmed client in another pod"

log "shimmed server bound to its pod IP: shimmed, in-pod and non-shimmed clients"
slim_mark "$S1" "$S2"
suite podip_slim h1/p1 --slim "$srv" 12000 "$sub"
check other_control podip_slim "server bound to its pod IP, shimmed client"
slim_took "server bound to its pod IP, shimmed client" "$S1" "$S2"
suite podip_local_control h2/p1 "$srv" 10000 "$sub"
slim_mark "$S2"
suite podip_local h2/p1 --slim "$srv" 12000 "$sub"
check podip_local_control podip_local "server bound to its pod IP, in-pod client"
slim_took "server bound to its pod IP, in-pod client" "$S2" "$S2"
suite podip_other h1/p2 "$srv" 12000 "$sub"
check other_control podip_other "server bound to its pod IP, non-shimmed client"

log "shimmed client to a fabric address (not the overlay: untouched)"
fsub=connect_block,connect_nonblock,refused_block,refused_nonblock,whoami,bind_before_connect
fsub=$fsub,epoll_before_connect,srv_block,srv_epoll,threads
suite fabric_control h1/p1 "$h1" 14000 "$fsub"
suite fabric h1/p1 --slim "$h1" 14000 "$fsub"
check fabric_control fabric "connect to a fabric address"

# established HOST PATTERN: ESTABLISHED TCP connections in HOST's namespace matching PATTERN
# ("local peer"), the routers' own fabric connections (port 7471) left out.
established() {
	in_ns "$1" ss -Htn state established | awk '{print $(NF-1), $NF}' | grep -v ':7471\b' |
		grep -E "$2" || true
}

log "a held shimmed connection is a host socket (198.18.0.1 -> 198.18.0.2), not a pod socket"
bg hold_slim h1/p1 --slim "$SEM" client --wait-file "$TMP/go_slim" "$srv" 8000 hold,wait
wait_for 10 grep -q '^ok hold' "$TMP/hold_slim.log"
host_conns=$(established h1 '^198\.18\.0\.1:[0-9]+ 198\.18\.0\.2:[0-9]+$')
pod_conns=$(established h1/p1 " ${srv//./\\.}:8000\$")
log "held (slim): host ss: [${host_conns//$'\n'/, }], pod ss: [${pod_conns//$'\n'/, }]"
[ -n "$host_conns" ] || problems+=("no 198.18.0.1 -> 198.18.0.2 connection in h1 while slim holds one")
[ -z "$pod_conns" ] || problems+=("the shimmed connection is a pod socket over the overlay")
touch "$TMP/go_slim.1"
wait_for 20 grep -Eq '^(not )?ok wait' "$TMP/hold_slim.log"
grep -q '^ok wait' "$TMP/hold_slim.log" || problems+=("held slim connection: $(tail -n1 "$TMP/hold_slim.log")")

# The same check on a control connection, to show it tells the two apart.
bg hold_plain h1/p1 "$SEM" client --wait-file "$TMP/go_plain" "$srv" 10000 hold,wait
wait_for 10 grep -q '^ok hold' "$TMP/hold_plain.log"
pod_conns=$(established h1/p1 " ${srv//./\\.}:10000\$")
log "held (control): pod ss: [${pod_conns//$'\n'/, }]"
[ -n "$pod_conns" ] || problems+=("the control connection is not visible in the pod's ss: the ss check is blind")
touch "$TMP/go_plain.1"

# flannel_bytes: bytes through h1's VXLAN device, both directions.
flannel_bytes() {
	in_ns h1 ip -s -j link show flannel.1 | jq '.[0].stats64.rx.bytes + .[0].stats64.tx.bytes'
}
log "50 MB over slim and over the overlay: flannel.1 byte counters on h1"
bytes=$((50 * 1024 * 1024))
b0=$(flannel_bytes)
suite bulk_slim h1/p1 --slim --bytes $bytes "$srv" 8000 bulk
b1=$(flannel_bytes)
suite bulk_control h1/p1 --bytes $bytes "$srv" 10000 bulk
b2=$(flannel_bytes)
log "flannel.1 grew by $((b1 - b0)) bytes during the slim transfer, $((b2 - b1)) during the control"
grep -q '^ok bulk' "$TMP/bulk_slim.out" || problems+=("slim bulk transfer failed")
grep -q '^ok bulk' "$TMP/bulk_control.out" || problems+=("control bulk transfer failed")
[ $((b1 - b0)) -lt $((bytes / 20)) ] ||
	problems+=("slim moved $((b1 - b0)) bytes through flannel.1 for a $bytes-byte transfer (>= 5%)")
[ $((b2 - b1)) -ge $bytes ] ||
	problems+=("the control moved only $((b2 - b1)) bytes through flannel.1: the counter check is blind")

if [ ${#problems[@]} -gt 0 ]; then
	for p in "${problems[@]}"; do log "problem: $p"; done
	fail "${#problems[@]} problem(s): ${problems[*]}"
fi
log "all checks passed"
