#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Bounded resources: a pod that opens 5,000 control connections and holds them gets 512 (the
# rest are closed at once, so its shims fall back) while another pod still gets slim
# connections and `slimctl status` works; 2,000 fabric connections from the fabric netns that
# send half a header (or nothing) are closed within the 5 s timeout (older ones sooner, by newer
# ones from the same address) while the router keeps answering; at EMFILE the fabric listener
# sheds connections without spinning or flooding the log.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd jq python3 prlimit
CTL=$BIN/slimctl
LOAD=$PROGS/router_load
[ -x "$CTL" ] && [ -x "$BIN/slimrouterd" ] || skip "needs slimctl and slimrouterd (make)"
[ -x "$LOAD" ] || skip "needs $LOAD (make -C tests)"

lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
LOG1=/run/slim/$PREFIX/h1/router.log
RPID=$(cat "/run/slim/$PREFIX/h1/router.pid")
ctl1() { "$CTL" -s "$S1" "$@"; }
status() { ctl1 --json status; }
# cpu_ticks: the router's user + system time, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$RPID/stat"; }

cat >"$TMP/hold.py" <<'EOF'
import os, resource, select, socket, sys, time
# hold.py SOCK N: opens N control connections, waits until the router has accepted or closed
# each, prints "open O closed C", then holds them until stdin closes.
path, n = sys.argv[1], int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    socks.append(s)
p = select.poll()
for s in socks:
    p.register(s, select.POLLIN | select.POLLHUP)
closed, deadline = set(), time.time() + 10
while time.time() < deadline:
    for fd, ev in p.poll(500):
        closed.add(fd)
        p.unregister(fd)
    if len(closed) >= n - 512:
        # Whatever the router keeps is quiet: give stragglers a moment, then report.
        for fd, ev in p.poll(300):
            closed.add(fd)
        break
print("open %d closed %d" % (n - len(closed), len(closed)), flush=True)
sys.stdin.read()
EOF

log "a pod opens 5,000 control connections and holds them"
mkfifo "$TMP/hold.in"
bg hold h1/p1 sh -c "python3 '$TMP/hold.py' '$S1' 5000 <'$TMP/hold.in'"
exec 7>"$TMP/hold.in" # keeps the holder's stdin open
cleanup "exec 7>&-"
wait_for 30 grep -q "^open" "$TMP/hold.log"
out=$(cat "$TMP/hold.log")
log "  $out"
assert_eq "$out" "open 512 closed 4488" "the pod's connections"
st=$(status) || fail "status while a pod holds 512 connections"
log "  status: clients $(jq .clients <<<"$st"), refused $(jq .limits.clients_refused <<<"$st")"
assert_ge "$(jq .limits.clients_refused <<<"$st")" 4488 "refused"
[ "$(jq .clients <<<"$st")" -le 520 ] || fail "clients: $(jq .clients <<<"$st")"
grep -q "refused: it would exceed its network namespace's share of the control connections" "$LOG1" ||
	fail "no log line for the refused connections"
lines=$(grep -c "refused: it would exceed" "$LOG1")
[ "$lines" -le 12 ] || fail "$lines log lines for 4,488 refusals (not rate-limited)"

log "another pod still gets slim connections; the holding pod's new ones fall back"
out=$(in_ns h1/p2 "$LOAD" "$S1" bench 10.244.1.3 7001 300) || fail "bench from h1/p2: $out"
log "  h1/p2: $out"
[[ $out == "bench 300 fd 300 fallback 0 "* ]] || fail "h1/p2 did not get 300 slim connections: $out"
out=$(in_ns h1/p1 "$LOAD" "$S1" bench 10.244.1.2 7002 10 2>&1 || true)
log "  h1/p1: $out"
[[ $out == *"fd 300"* || $out == *"fd 10 "* ]] && fail "h1/p1 got past its cap: $out"
exec 7>&-
wait_for 10 sh -c "[ \$('$CTL' -s '$S1' --json status | jq .clients) -le 2 ]"

log "2,000 fabric connections from the fabric netns send half a header, 20 send nothing"
# 198.18.0.3 is a cluster node that does not run (as a host address on the fabric bridge: a
# machine that is no router, or pretends to be node h3).
cluster=/run/slim/$PREFIX/cluster.json
jq '.nodes += [{"name":"h3","fabric_ip":"198.18.0.3","pod_cidr":"10.244.3.0/24"}]' "$cluster" \
	>"$TMP/c3.json"
cp "$TMP/c3.json" "$cluster"
kill -HUP "$RPID"
wait_for 5 grep -q "reloaded .*: 3 nodes" "$LOG1"
in_ns fabric ip addr add 198.18.0.3/24 dev br0
cat >"$TMP/half.py" <<'EOF'
import resource, select, socket, struct, sys, time
# half.py N SILENT: N connections to h1's router sending 10 of a header's 16 bytes, then SILENT
# sending nothing; prints how many the router closed and when (seconds after the last connect).
n, silent = int(sys.argv[1]), int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
hdr = struct.pack("!HHIII", 32, 0, 28, 1, 0)[:10]
socks = []
for i in range(n + silent):
    s = socket.socket()
    s.bind(("198.18.0.3", 0))
    s.connect(("198.18.0.1", 7471))
    if i < n:
        s.send(hdr)
    socks.append(s)
t0 = time.time()
p = select.poll()
for s in socks:
    p.register(s, select.POLLIN | select.POLLHUP)
when, byfd = {}, {s.fileno(): s for s in socks}
while len(when) < len(socks) and time.time() < t0 + 15:
    for fd, ev in p.poll(100):
        try:
            if ev & select.POLLIN and byfd[fd].recv(4096, socket.MSG_DONTWAIT):
                continue  # the router's challenge (with a cluster secret): still open
        except (ConnectionResetError, BlockingIOError):
            pass
        when[fd] = time.time() - t0
        p.unregister(fd)
last = sorted(when.values())
silent_fds = set(s.fileno() for s in socks[n:])
print("closed %d of %d, last after %.1f s, silent closed %d after %.1f-%.1f s" % (
    len(when), len(socks), last[-1] if last else -1,
    len([fd for fd in when if fd in silent_fds]),
    min([when[fd] for fd in when if fd in silent_fds] or [-1]),
    max([when[fd] for fd in when if fd in silent_fds] or [-1])), flush=True)
EOF
bg half fabric python3 "$TMP/half.py" 2000 20
# While they are open: the router answers, a resolution from h2 still works.
wait_for 20 sh -c "[ \$('$CTL' -s '$S1' --json status | jq .limits.fabric_refused) -ge 100 ]"
st=$(status) || fail "status during the fabric flood"
log "  during: $(jq -c '.limits' <<<"$st"), $(jq '.peers | length' <<<"$st") fabric connections"
[ "$(jq '.peers | length' <<<"$st")" -le 40 ] || fail "the router holds $(jq '.peers | length' <<<"$st") fabric connections"
bg srv h1/p1 "$LOAD" "$S1" serve 10.244.1.2 7100
wait_for 5 grep -q "^serving" "$TMP/srv.log"
out=$(in_ns h2/p1 "$LOAD" "/run/slim/$PREFIX/h2/router.sock" burst 10.244.1.2 7100 1) ||
	fail "resolution from h2 during the flood: $out"
log "  h2/p1 -> h1/p1 during the flood: $out"
[[ $out == "burst 1 fd 1 "* ]] || fail "h2 could not resolve h1's listener: $out"
wait_for 30 grep -q "^closed" "$TMP/half.log"
out=$(cat "$TMP/half.log")
log "  $out"
[[ $out == "closed 2020 of 2020, "* ]] || fail "not every connection was closed: $out"
awk -v l="$(sed 's/.*last after \([0-9.]*\) s.*/\1/' <<<"$out")" 'BEGIN { exit !(l < 8) }' ||
	fail "the last connection was closed after more than 8 s: $out"
# The newest connections (silent ones) outlive the others: the 5 s timeout closes them.
[[ $out == *"silent closed 20 after "* ]] || fail "silent connections: $out"
awk -v l="$(sed 's/.*silent closed 20 after [0-9.]*-\([0-9.]*\) s.*/\1/' <<<"$out")" \
	'BEGIN { exit !(l >= 4.5 && l < 8) }' || fail "the last silent ones were not closed by the timeout: $out"
st=$(status)
log "  after: $(jq -c '.limits' <<<"$st")"
assert_ge "$(jq .limits.fabric_timed_out <<<"$st")" 1 "closed by the timeout"
grep -q "closed: nothing sent for 5 s\|closed: incomplete message for 5 s\|closed: not authenticated within 5 s" "$LOG1" ||
	fail "no log line for a timed-out connection"
lines=$(grep -c "(incoming): closed\|, incoming): closed" "$LOG1")
[ "$lines" -le 40 ] || fail "$lines log lines for 2,020 closed fabric connections (not rate-limited)"

log "out of descriptors: the fabric listener sheds, without spinning or flooding the log"
nfd=$(ls "/proc/$RPID/fd" | wc -l)
hard=$(prlimit --pid "$RPID" --nofile --noheadings --output HARD)
prlimit --pid "$RPID" --nofile=$((nfd + 4)):"$hard"
cleanup "prlimit --pid $RPID --nofile=$hard:$hard"
before=$(cpu_ticks)
bg half2 fabric python3 "$TMP/half.py" 200 0
wait_for 20 grep -q "out of descriptors" "$LOG1"
sleep 2 # a window in which to measure the router's CPU time, not a readiness wait
used=$(($(cpu_ticks) - before))
log "  router CPU in the window: $used ticks (of $(getconf CLK_TCK) per second)"
[ "$used" -lt $(($(getconf CLK_TCK) * 3 / 2)) ] || fail "the router spun at EMFILE: $used ticks"
lines=$(grep -c "out of descriptors" "$LOG1")
[ "$lines" -le 12 ] || fail "$lines log lines about EMFILE (not rate-limited)"
prlimit --pid "$RPID" --nofile="$hard":"$hard"
wait_for 30 grep -q "^closed" "$TMP/half2.log"
log "  $(cat "$TMP/half2.log")"
ctl1 status >/dev/null || fail "status after EMFILE"
out=$(in_ns h1/p2 "$LOAD" "$S1" bench 10.244.1.3 7003 100) || fail "bench after: $out"
[[ $out == "bench 100 fd 100 "* ]] || fail "after EMFILE: $out"
log "ok"
