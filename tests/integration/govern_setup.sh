#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Governed setup as an app sees it: the shim connects pre-made host sockets in the app's own
# process and the kernel routes them. A remote destination costs one question to the router (a
# miss), every later connect none (the kernel's route map answers); the server learns each
# client's overlay address from the identity in its SYN, also when the server's host answers
# every SYN with a cookie (the identity then comes with the ACK); a router stopped with SIGSTOP
# does not delay the connects of a process whose pool is warm to routes already in the map.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd python3 jq
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
S2=/run/slim/$PREFIX/h2/router.sock
kern() { "$BIN/slimctl" -s "$1" --json status | jq -r ".governance.kernel.$2"; }
srv=$(addr h2/p1) cli=$(addr h1/p1)

# A server that names every peer the kernel gives it and answers one byte; backlog from $2.
cat >"$TMP/server.py" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(int(sys.argv[2]))
print("listening", flush=True)
while True:
    c, peer = s.accept()
    print("peer", peer[0], flush=True)
    c.sendall(b"x")
    c.close()
EOF
# A client: N connects (one byte back each), then, if asked, waits for a go file and does M
# more, printing the slowest of those in ms.
cat >"$TMP/client.py" <<'EOF'
import os, socket, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def one():
    t = time.monotonic()
    c = socket.create_connection((dst, port), timeout=5)
    assert c.recv(1) == b"x"
    local = c.getsockname()[0]
    c.close()
    return (time.monotonic() - t) * 1000, local
for _ in range(n):
    ms, local = one()
print("local", local, flush=True)
if len(sys.argv) > 4:
    ready, go, m = sys.argv[4], sys.argv[5], int(sys.argv[6])
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    print("slowest_ms %.1f" % max(one()[0] for _ in range(m)), flush=True)
EOF

bg srv h2/p1 --slim python3 "$TMP/server.py" 8300 128
wait_for 10 grep -q listening "$TMP/srv.log"
wait_for 10 sh -c "'$BIN/slimctl' -s '$S2' listeners | grep -q ':8300 '"

log "a remote destination: one miss, then the kernel answers alone"
m0=$(kern "$S1" connect_miss) ok0=$(kern "$S1" connect_ok) a0=$(kern "$S2" accept_ok)
pm0=$(kern "$S1" pool_made)
out=$(in_slim h1/p1 python3 "$TMP/client.py" "$srv" 8300 20)
assert_eq "$out" "local $cli" "the client's own name"
assert_eq "$(( $(kern "$S1" connect_miss) - m0 ))" 1 "misses for 20 connects"
assert_ge "$(( $(kern "$S1" connect_ok) - ok0 ))" 20 "connects the kernel routed"
# The pool sockets got their state as they were born (cgroup/sock_create), not one call at a time.
assert_ge "$(( $(kern "$S1" pool_made) - pm0 ))" 20 "pool sockets the kernel gave their state"
! grep -q "does not give new sockets their state" "/run/slim/$PREFIX/h1/router.log" ||
	fail "the router makes pool sockets the long way"
assert_ge "$(( $(kern "$S2" accept_ok) - a0 ))" 20 "identities the server's host accepted"
assert_eq "$(grep -c "^peer $cli$" "$TMP/srv.log")" 20 "peers the server saw as $cli"
assert_eq "$(grep -c "^peer" "$TMP/srv.log")" 20 "peers the server saw"

log "SYN cookies on the server's host: the identity comes with the ACK"
in_ns h2 sysctl -q -w net.ipv4.tcp_syncookies=2
cleanup "$SLIMLAB exec --prefix $PREFIX h2 -- sysctl -q -w net.ipv4.tcp_syncookies=1"
bg srv2 h2/p1 --slim python3 "$TMP/server.py" 8301 1
wait_for 10 grep -q listening "$TMP/srv2.log"
wait_for 10 sh -c "'$BIN/slimctl' -s '$S2' listeners | grep -q ':8301 '"
a0=$(kern "$S2" accept_ok) d0=$(kern "$S2" syn_dropped)
in_slim h1/p1 python3 "$TMP/client.py" "$srv" 8301 20 >/dev/null
in_ns h2 nstat -az TcpExtSyncookiesSent | grep -q "TcpExtSyncookiesSent *[1-9]" ||
	fail "h2 sent no SYN cookies: the case did not happen"
assert_ge "$(( $(kern "$S2" accept_ok) - a0 ))" 20 "identities from cookie ACKs"
assert_eq "$(( $(kern "$S2" syn_dropped) - d0 ))" 0 "SYNs dropped"
assert_eq "$(grep -c "^peer $cli$" "$TMP/srv2.log")" 20 "peers the server saw as $cli"

log "h1's router stopped: a process with a warm pool connects as fast as before, over slim"
pid1=$(cat "/run/slim/$PREFIX/h1/router.pid")
bg warm h1/p1 --slim python3 "$TMP/client.py" "$srv" 8300 30 "$TMP/ready" "$TMP/go" 10
wait_for 20 test -e "$TMP/ready"
ok0=$(kern "$S1" connect_ok)
kill -STOP "$pid1"
cleanup "kill -CONT $pid1"
touch "$TMP/go"
wait_for 20 grep -q slowest_ms "$TMP/warm.log"
kill -CONT "$pid1"
slowest=$(sed -n 's/^slowest_ms //p' "$TMP/warm.log")
log "  slowest of 10 connects with the router stopped: $slowest ms"
awk -v s="$slowest" 'BEGIN { exit !(s < 200) }' || fail "a connect took $slowest ms"
assert_ge "$(( $(kern "$S1" connect_ok) - ok0 ))" 10 "connects the kernel routed meanwhile"
log "ok"
