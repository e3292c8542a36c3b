#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fairness and malformed input: a pod that floods ROUTE_REQs without reading its replies is
# closed by the router while another pod's setups keep being answered quickly (no client ever
# has more than 64 replies queued: the router's high-water mark); a pod with a burst of requests
# waiting on an unreachable node is held at 64 pending (high-water mark), the node then counts as
# stalled so the rest fall back at once, and all of them fall back while others are served; every kind of malformed
# message closes only its sender.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
LOAD=$PROGS/router_load
CTL=$BIN/slimctl
[ -x "$LOAD" ] || skip "needs $LOAD (make -C tests)"
[ -x "$CTL" ] && [ -x "$BIN/slimrouterd" ] || skip "needs slimctl and slimrouterd (make)"
need_cmd jq

lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
inside() { local t=$1; shift; "$SLIMLAB" exec --prefix "$PREFIX" "$t" -- "$@"; }
# probe: 300 setups from h1/p2 to its own listener; prints the bench line.
probe() { inside h1/p2 "$LOAD" "$S1" bench 10.244.1.3 "$1" 300; }
field() { sed -n "s/.* $1 \([0-9.]*\).*/\1/p" <<<"$2"; }

log "baseline: setup latency with nobody else around"
base=$(probe 7001) || fail "baseline: $base"
log "  $base"

log "a pod floods ROUTE_REQs and never reads (in a loop, reconnecting)"
bg serve h1/p1 "$LOAD" "$S1" serve 10.244.1.2 7000
wait_for 5 grep -q "^serving host=198.18.0.1:" "$TMP/serve.log"
cat >"$TMP/flood.sh" <<EOF
while :; do "$LOAD" "$S1" flood 10.244.1.2 7000 100000; done
EOF
bg flood h1/p1 bash "$TMP/flood.sh"
wait_for 10 grep -q "^flood sent" "$TMP/flood.log"
during=$(probe 7002) || fail "probe during the flood: $during"
log "  $during"
kill_tree "$PID_flood"
[ "$(field fd "$during")" = 300 ] || fail "probe did not get 300 fds: $during"
# The flood costs CPU on a 2-core machine; what must not happen is the probe waiting behind
# the flood's queue (that would be seconds). Allow a generous absolute bound.
awk -v m="$(field p99_us "$during")" 'BEGIN { exit !(m < 100000) }' ||
	fail "p99 during the flood >= 100 ms: $during"
floods=$(grep -c "^flood sent" "$TMP/flood.log")
assert_ge "$floods" 1 "flood rounds"
grep "^flood sent" "$TMP/flood.log" | head -n 3 | sed 's/^/  /'
if grep "^flood sent" "$TMP/flood.log" | grep -qv "closed 1$"; then
	fail "a flooder was not closed by the router: $(grep -v 'closed 1$' "$TMP/flood.log" | head -n 3)"
fi
grep -q "does not read its replies" "/run/slim/$PREFIX/h1/router.log" ||
	fail "no log line about the flooder"
# The router's own high-water mark, not a sample: no client ever had more than 64 replies
# queued, and the flooders did reach the cap.
assert_eq "$("$CTL" -s "$S1" --json status | jq .limits.client_queued_max)" 64 "most replies queued for one client"

log "a burst of 300 requests to an unreachable node: at most 64 pending, all fall back"
cluster=/run/slim/$PREFIX/cluster.json
jq '.nodes += [{"name":"h3","fabric_ip":"198.18.0.3","pod_cidr":"10.244.3.0/24"}]' "$cluster" \
	>"$TMP/c3.json"
cp "$TMP/c3.json" "$cluster"
kill -HUP "$(cat "/run/slim/$PREFIX/h1/router.pid")"
wait_for 5 grep -q "reloaded .*: 3 nodes" "/run/slim/$PREFIX/h1/router.log"
assert_eq "$("$CTL" -s "$S1" --json status | jq .limits.client_pending_max)" 0 "pending before the burst"
bg burst h1/p1 "$LOAD" "$S1" burst 10.244.3.2 1000 300
wait_for 5 sh -c "[ \$('$CTL' -s '$S1' --json status | jq .resolving) -ge 1 ]"
mid=$(probe 7003) || fail "probe during the burst: $mid"
log "  $mid"
[ "$(field fd "$mid")" = 300 ] || fail "probe did not get 300 fds: $mid"
wait_for 30 grep -q "^burst\|^error" "$TMP/burst.log"
out=$(cat "$TMP/burst.log")
max=$("$CTL" -s "$S1" --json status | jq .limits.client_pending_max)
log "  $out (most pending for one client: $max)"
[[ $out == "burst 300 fd 0 fallback 300 "* ]] || fail "burst: $out"
# The router's high-water mark of one client's waiting requests (not a sample): the cap was
# reached and never passed.
assert_eq "$max" 64 "most requests pending for one client"
# And from the client's side: the first 64 wait for the resolution to give up (1 s); after that
# the node counts as stalled and the rest fall back at once, not 64 by 64 (which took 4-5 s).
took=$(sed 's/.* ms \([0-9]*\).*/\1/' <<<"$out")
assert_ge "$took" 900 "burst duration (ms): the first requests waited for the timeout"
[ "$took" -lt 2500 ] || fail "burst duration $took ms: a stalled node is asked again and again"

log "fabric: malformed peer messages and non-node sources close only that connection"
cat >"$TMP/peer.py" <<'EOF'
import hashlib, hmac, os, socket, struct, sys
# peer.py KIND KEYFILE: authenticates to h1's router with the lab's secret (as the node whose
# address it has), sends one message and prints "closed" when the router hangs up.
kind, key = sys.argv[1], open(sys.argv[2], "rb").read()
if kind == "length":
    msg = struct.pack("!HHIII", 32, 0, 100000, 1, 0)
elif kind == "type":  # an answer sent to the answering side
    msg = struct.pack("!HHIIIIIHH", 33, 0, 28, 1, 0, 1, 0, 0, 0)
else:  # a valid request: must be answered, and the connection kept
    msg = struct.pack("!HHIIIIHHI", 32, 0, 28, 5, 0, 0x0201f40a, 80, 0, 0x0202f40a)
s = socket.create_connection(("198.18.0.1", 7471), timeout=5)
try:
    hdr = s.recv(16, socket.MSG_WAITALL)
    if len(hdr) == 16 and struct.unpack("!H", hdr[:2])[0] == 36:
        challenge, nonce = s.recv(32, socket.MSG_WAITALL), os.urandom(32)
        me, peer = s.getsockname()[0], "198.18.0.1"
        mac = hmac.new(key, b"slim fabric v1 dialer\0" + challenge + nonce + socket.inet_aton(me) +
                       socket.inet_aton(peer), hashlib.sha256).digest()
        s.sendall(struct.pack("!HHIII", 37, 0, 80, 0, 0) + nonce + mac)
        s.recv(48, socket.MSG_WAITALL)  # AUTH_OK
    s.sendall(msg)
    # The whole answer, however the bytes arrive: its header, then the length it gives.
    data = s.recv(16, socket.MSG_WAITALL)
    if len(data) == 16:
        data += s.recv(struct.unpack("!I", data[4:8])[0] - 16, socket.MSG_WAITALL)
except (ConnectionResetError, BrokenPipeError):
    data = b""
except socket.timeout:
    data = None
if data == b"":
    print("closed")
elif data is None:
    print("open")
elif len(data) < 20:
    print("short answer of %d bytes: %s" % (len(data), data.hex()))
else:
    hdr = struct.unpack("!HHIII", data[:16])
    print("answer type %d len %d id %d status %d" % (hdr[0], hdr[1 + 1], hdr[3],
          struct.unpack("!I", data[16:20])[0]))
EOF
KEY=/run/slim/$PREFIX/cluster.key
assert_eq "$(inside h2 python3 "$TMP/peer.py" length "$KEY")" closed "bad length"
assert_eq "$(inside h2 python3 "$TMP/peer.py" type "$KEY")" closed "wrong type"
# 10.244.2.1 is no pod of h1: NO_POD (3), and the connection stays up.
assert_eq "$(inside h2 python3 "$TMP/peer.py" request "$KEY")" "answer type 33 len 28 id 5 status 3" "request"
assert_eq "$(inside h1/p1 python3 "$TMP/peer.py" request "$KEY")" closed "from a pod address"
grep -q "refusing 10.244.1.2:[0-9]*: not another node's fabric_ip" "/run/slim/$PREFIX/h1/router.log" ||
	fail "no log line about the refused source"
grep -q "closed: malformed message length" "/run/slim/$PREFIX/h1/router.log" || fail "no length log"
grep -q "closed: unexpected message type" "/run/slim/$PREFIX/h1/router.log" || fail "no type log"

log "malformed messages close only their sender"
for kind in short len type reserved nopts sockopt big; do
	out=$(inside h1/p1 "$LOAD" "$S1" garbage "$kind")
	assert_eq "$out" "garbage $kind closed 1" "$kind"
done
grep -q "malformed message" "/run/slim/$PREFIX/h1/router.log" || fail "no warning logged"
after=$(probe 7004) || fail "probe after garbage: $after"
[ "$(field fd "$after")" = 300 ] || fail "router stopped serving: $after"
"$CTL" -s "$S1" status >/dev/null || fail "status after garbage"
log "ok"
