#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Authenticated fabric: the lab's routers share a random secret (cluster.json secret_file, mode
# 0600) and every fabric connection starts with an HMAC-SHA256 challenge-response. The lab's
# routers authenticate each other (both directions) and still resolve across hosts; a process in
# the fabric netns, at the address of a cluster node, that sends POD_SYNC and RESOLVE_REQ
# without the secret (or with a wrong proof) is closed and changes nothing; the same messages
# after a proof made with the secret do take effect (so the check is what stops them); a router
# that dials a fake node sends its proof and nothing else, and hangs up on a made-up answer.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd jq python3
CTL=$BIN/slimctl
LOAD=$PROGS/router_load
[ -x "$CTL" ] && [ -x "$BIN/slimrouterd" ] || skip "needs slimctl and slimrouterd (make)"
[ -x "$LOAD" ] || skip "needs $LOAD (make -C tests)"

lab_up >/dev/null
RUN=/run/slim/$PREFIX
S1=$RUN/h1/router.sock
LOG1=$RUN/h1/router.log
ctl1() { "$CTL" -s "$S1" "$@"; }

log "the lab's secret: 32 random bytes, root's, mode 0600, named by cluster.json"
key=$(jq -r .secret_file "$RUN/cluster.json")
assert_eq "$key" "$RUN/cluster.key" "secret_file"
assert_eq "$(stat -c '%a %U %s' "$key")" "600 root 32" "key file"
out=$("$BIN/slimrouterd" -n --cluster "$RUN/cluster.json") || fail "-n: $out"
grep -qx "secret_file $key: ok" <<<"$out" || fail "-n: $out"
cp "$key" "$TMP/open.key"
chmod 644 "$TMP/open.key"
jq --arg k "$TMP/open.key" '.secret_file = $k' "$RUN/cluster.json" >"$TMP/open.json"
if out=$("$BIN/slimrouterd" -n --cluster "$TMP/open.json" 2>&1); then fail "a readable key was taken"; fi
grep -q "must be ours and mode 0600" <<<"$out" || fail "-n with a readable key: $out"

log "the routers authenticated each other and work"
wait_for 10 sh -c "'$CTL' -s '$S1' --json status | jq -e '[.peers[] | select(.authenticated)] | length == 2'"
ctl1 --json status | jq -c '[.peers[] | {dir, authenticated}]'
grep -q "peer h2: authenticated (outgoing)" "$LOG1" || fail "no outgoing authentication logged"
grep -q "peer h2: authenticated (incoming)" "$LOG1" || fail "no incoming authentication logged"
wait_for 10 sh -c "'$CTL' -s '$S1' --json directory | jq -e '[.pods[] | select(.local == false)] | length == 2'"
bg srv h1/p1 "$LOAD" "$S1" serve 10.244.1.2 7100
wait_for 5 grep -q "^serving" "$TMP/srv.log"
out=$(in_ns h2/p1 "$LOAD" "$RUN/h2/router.sock" burst 10.244.1.2 7100 1) || fail "resolution: $out"
[[ $out == "burst 1 fd 1 "* ]] || fail "h2 could not resolve h1's listener: $out"

log "a process on the fabric at a node's address (h3, not running)"
jq '.nodes += [{"name":"h3","fabric_ip":"198.18.0.3","pod_cidr":"10.244.3.0/24"}]' \
	"$RUN/cluster.json" >"$TMP/c3.json"
cp "$TMP/c3.json" "$RUN/cluster.json"
kill -HUP "$(cat "$RUN/h1/router.pid")"
wait_for 5 grep -q "reloaded .*: 3 nodes" "$LOG1"
in_ns fabric ip addr add 198.18.0.3/24 dev br0
cat >"$TMP/peer.py" <<'EOF'
import hashlib, hmac, os, socket, struct, sys
# peer.py MODE [KEYFILE]: talks to h1's router as "h3". MODE: plain (no handshake), wrong (a
# response with a made-up proof), secret (a proper handshake with KEYFILE). Then announces pod
# 10.244.3.5 and asks where 10.244.1.2:7100 listens. Prints what came back.
mode = sys.argv[1]
s = socket.socket()
s.bind(("198.18.0.3", 0))
s.settimeout(3)
s.connect(("198.18.0.1", 7471))
def recv_msg():
    try:
        hdr = s.recv(16, socket.MSG_WAITALL)
        if len(hdr) < 16:
            return None
        t, _, n, _, _ = struct.unpack("!HHIII", hdr)
        return t, s.recv(n - 16, socket.MSG_WAITALL)
    except (ConnectionResetError, socket.timeout):
        return None
got = []
m = recv_msg()
got.append("challenge" if m and m[0] == 36 else "no challenge")
ip = lambda a: socket.inet_aton(a)
if mode != "plain" and m and m[0] == 36:
    nonce = os.urandom(32)
    if mode == "secret":
        key = open(sys.argv[2], "rb").read()
        msg = b"slim fabric v1 dialer\0" + m[1] + nonce + ip("198.18.0.3") + ip("198.18.0.1")
        mac = hmac.new(key, msg, hashlib.sha256).digest()
    else:
        mac = os.urandom(32)
    s.sendall(struct.pack("!HHIII", 37, 0, 80, 0, 0) + nonce + mac)
    ok = recv_msg()
    got.append("ok" if ok and ok[0] == 38 else "no ok")
try:
    name, labels = b"evil".ljust(64, b"\0"), b'{"pod":"evil"}'.ljust(448, b"\0")
    s.sendall(struct.pack("!HHIII", 35, 0, 536, 0, 0) + struct.pack("!I", 1) + bytes(4) + bytes(64 + 448))
    s.sendall(struct.pack("!HHIII", 35, 0, 536, 0, 0) + struct.pack("!I", 2) + ip("10.244.3.5") + name + labels)
    s.sendall(struct.pack("!HHIII", 32, 0, 28, 9, 0) + ip("10.244.1.2") + struct.pack("!HH", 7100, 0) + ip("10.244.3.5"))
except (BrokenPipeError, ConnectionResetError):
    pass
m = recv_msg()
got.append("answer status %d" % struct.unpack("!I", m[1][:4])[0] if m and m[0] == 33 else "closed")
print(" ".join(got))
EOF
evil() { ctl1 --json directory | jq '[.pods[] | select(.ip == "10.244.3.5")] | length'; }
out=$(in_ns fabric python3 "$TMP/peer.py" plain)
log "  no handshake: $out"
assert_eq "$out" "challenge closed" "without the secret"
out=$(in_ns fabric python3 "$TMP/peer.py" wrong)
log "  a made-up proof: $out"
assert_eq "$out" "challenge no ok closed" "with a wrong proof"
assert_eq "$(evil)" 0 "pods announced without the secret"
grep -q "peer h3 (198.18.0.3:[0-9]*, incoming): closed: not authenticated" "$LOG1" ||
	fail "no log line for the unauthenticated peer"
grep -q "peer h3 (198.18.0.3:[0-9]*, incoming): closed: authentication failed (wrong secret)" "$LOG1" ||
	fail "no log line for the wrong proof"
ctl1 status >/dev/null || fail "status"

log "the same messages after a proof made with the secret are believed (the check is what stopped them)"
out=$(in_ns fabric python3 "$TMP/peer.py" secret "$key")
log "  with the secret: $out"
# 10.244.1.2:7100 listens (router_load serve): FOUND (1).
assert_eq "$out" "challenge ok answer status 1" "with the secret"
assert_eq "$(evil)" 1 "pod announced with the secret"
log "h1 dialing a fake h3 that does not know the secret: h1 sends its proof and nothing else"
cat >"$TMP/acceptor.py" <<'EOF'
import os, socket, struct, sys, time
# A fake router at 198.18.0.3:7471: challenges the first router that dials, answers its proof
# with a made-up AUTH_OK, and reports what it received before and after.
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("198.18.0.3", 7471))
l.listen(8)
print("listening", flush=True)
c, _ = l.accept()
c.sendall(struct.pack("!HHIII", 36, 0, 48, 0, 0) + os.urandom(32))
def drain(seconds):
    data, end = b"", time.time() + seconds
    c.settimeout(0.1)
    while time.time() < end:
        try:
            d = c.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not d:
            return data, True
        data += d
    return data, False
before, _ = drain(1.5)
types = []
off = 0
while off + 16 <= len(before):
    t, _, n, _, _ = struct.unpack("!HHIII", before[off:off + 16])
    types.append(t)
    off += n
c.sendall(struct.pack("!HHIII", 38, 0, 48, 0, 0) + os.urandom(32))
after, closed = drain(3)
print("received types %s (%d bytes), then %d bytes and %s" % (types, len(before), len(after),
      "closed" if closed else "open"), flush=True)
EOF
bg acceptor fabric python3 "$TMP/acceptor.py"
wait_for 5 grep -q "^listening" "$TMP/acceptor.log"
# A connect from h1/p1 to a pod of h3 makes h1 resolve there: it dials 198.18.0.3.
out=$(in_ns h1/p1 "$LOAD" "$S1" burst 10.244.3.7 80 1) || true
log "  h1/p1 -> 10.244.3.7:80: $out"
wait_for 10 grep -q "^received" "$TMP/acceptor.log"
out=$(grep "^received" "$TMP/acceptor.log")
log "  fake h3: $out"
assert_eq "$out" "received types [37] (80 bytes), then 0 bytes and closed" "what h1 sent the fake h3"
grep -q "peer h3 (198.18.0.3:7471, outgoing): closed: authentication failed (wrong secret)" "$LOG1" ||
	fail "no log line for the fake acceptor"
log "ok"
