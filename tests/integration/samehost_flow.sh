#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Flow control on the same-host fast path (bpf/, docs/design.md "Same-host fast path"): in a
# namespace of its own, tests/progs/sockmap_flow joins a fresh cgroup, loads the sockmap programs
# through libslimbpf and runs every case on a redirected pair and on a plain TCP pair (the
# control):
#  - stalled receiver: a non-blocking sender gets EAGAIN within 16 MiB, POLLOUT is off, it stays
#    stopped; a blocking send honours SO_SNDTIMEO; the connection (SO_MEMINFO of both ends) and
#    the host's TCP memory (/proc/net/sockstat, before vs during) grow by at most 16 MiB; the
#    reader drains, an edge-triggered EPOLLOUT wakes the sender; every byte checked; after the
#    close the host's TCP memory is back (within 2 MiB: per-CPU batches);
#  - a blocking sender blocks within 16 MiB and resumes;
#  - a signal interrupts a blocking 32 MiB send: a partial count (or EINTR), and exactly that
#    many bytes arrive;
#  - close with 3 MiB unread: the sender learns at once, its writes fail, the memory is freed;
#  - a producer 10x faster than its consumer for 30 s: the connection's memory (SO_MEMINFO,
#    reserves included) within 16 MiB all along, the host's TCP memory within 16 MiB (median
#    over the run: other programs on a shared host move it too), bytes exact;
#  - a reader that pauses and drains by turns, so the fast path keeps switching between
#    redirect and TCP: bytes exact;
#  - a segment repeating bytes its receiver already has (TCP resends such segments under loss;
#    made here with a raw socket) at a mapped receiver: the stream verdict cuts the repeat (the
#    kernel would pass it on twice: 65,483 extra bytes in a CI run of "bursty" before the cut),
#    bytes exact;
#  - last (its sender may keep its queue for a while): close with everything queued: the sender
#    learns at once (what its writes do is logged: the known limit in docs/design.md).
# And the kernel must not have logged "TCP: out of memory" meanwhile, and the host's TCP memory
# after the run is within 16 MiB of before.
# timeout: 200
. "$(dirname "$0")/../lib.sh"

need_root
need_cmd ip nsenter
prog=$PROGS/sockmap_flow
[ -x "$prog" ] || fail "$prog not built (make -C tests)"
cgroot=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
[ -n "$cgroot" ] || skip "no cgroup v2 mount"

ns=$PREFIX-flow
cg=$cgroot/$PREFIX-flow
cleanup "ip netns del $ns"
cleanup "rmdir_when_empty $cg"
# A killed run leaves its process in the cgroup for a moment (links and maps go with the process).
rmdir_when_empty() {
	local i
	for i in $(seq 50); do
		[ -e "$1" ] || return 0
		rmdir "$1" 2>/dev/null && return 0
		sleep 0.1
	done
}
ip netns add "$ns"
ip -n "$ns" link set lo up
# 198.18.0.1 plays this host's fabric address (redirected), 198.18.0.2 another local address.
ip -n "$ns" addr add 198.18.0.1/32 dev lo
ip -n "$ns" addr add 198.18.0.2/32 dev lo

oom() { dmesg 2>/dev/null | grep -c 'TCP: out of memory' || true; }
oom0=$(oom)
mem0=$(awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)

# nsenter, not ip netns exec: the latter remounts /sys, hiding the cgroup v2 hierarchy.
nsenter --net="/run/netns/$ns" "$prog" --cgroup "$cg" --host-ip 198.18.0.1 \
	--other-ip 198.18.0.2 stall block eintr unread slow=30 bursty=10 overlap unread_full \
	>"$TMP/out.log" 2>&1 &
pid=$!
cleanup "kill $pid"
rc=0
wait $pid || rc=$?
sed 's/^/  /' "$TMP/out.log"
[ $rc = 0 ] || fail "sockmap_flow failed (exit $rc)"
grep -q '^PASS unread_full$' "$TMP/out.log" || fail "sockmap_flow did not finish"

mem1=$(awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)
log "host TCP memory: $mem0 pages before, $mem1 after"
# The unread_full case's sender may still hold its send buffer (the known limit), and the figure
# is host-wide: 16 MiB (4096 pages) of slack, no more.
[ $((mem1 - mem0)) -le 4096 ] || fail "host TCP memory grew by $((mem1 - mem0)) pages over the run"
[ "$(oom)" = "$oom0" ] || fail "the kernel logged 'TCP: out of memory' during the run"
log "pass"
