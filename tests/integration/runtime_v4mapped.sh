#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runtimes whose clients connect IPv6 sockets to v4-mapped addresses (::ffff:10.244.2.2) go over
# slim with their defaults: Java's HttpClient (openjdk 17) and a gRPC client and server (Debian's
# python3-grpcio, whose C core opens dual-stack sockets), across hosts. Each must get its exact
# answer, and the servers' hosts must have accepted the connections with a valid identity (the
# slim path), not over the overlay.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd jq java javac
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
# Debian's python3 (the one python3-grpcio installs into), whatever python3 is first on PATH.
PY=/usr/bin/python3
"$PY" -c 'import grpc' 2>/dev/null || skip "needs python3-grpcio for $PY"
lab_up >/dev/null
S2=/run/slim/$PREFIX/h2/router.sock
accepts() { "$BIN/slimctl" -s "$S2" --json status | jq .governance.kernel.accept_ok; }
srv=$(addr h2/p1)

log "Java HttpClient (defaults: a dual-stack socket) -> a shimmed HTTP server"
mkdir -p "$TMP/java" "$TMP/www"
echo "slim says hello $$" >"$TMP/www/hello.txt"
cat >"$TMP/java/Get.java" <<'EOF'
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Get {
    public static void main(String[] args) throws Exception {
        HttpClient c = HttpClient.newHttpClient();
        for (int i = 0; i < Integer.parseInt(args[1]); i++) {
            HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create(args[0])).build(),
                HttpResponse.BodyHandlers.ofString());
            System.out.println(r.statusCode() + " " + r.body().trim());
        }
    }
}
EOF
javac -d "$TMP/java" "$TMP/java/Get.java"
bg http h2/p1 --slim sh -c "cd '$TMP/www' && exec $PY -m http.server 8088"
wait_for 10 listening h2/p1 8088
wait_for 10 sh -c "'$BIN/slimctl' -s '$S2' listeners | grep -q ':8088 '"
a0=$(accepts)
out=$(in_slim h1/p1 java -cp "$TMP/java" Get "http://$srv:8088/hello.txt" 3)
assert_eq "$(grep -c "^200 slim says hello $$\$" <<<"$out")" 3 "Java's answers ($out)"
assert_ge "$(( $(accepts) - a0 ))" 1 "connections the server's host accepted over slim"
grep -q "^10\.244\.1\.2 .*GET /hello.txt" "$TMP/http.log" ||
	fail "the server did not see the client's overlay address: $(tail -n 3 "$TMP/http.log")"

log "gRPC (Python, C core) client and server, both dual-stack"
cat >"$TMP/grpc_echo.py" <<'EOF'
import sys
from concurrent import futures
import grpc

def echo(req, ctx):
    return b"echo:" + req + b" from " + ctx.peer().encode()

if sys.argv[1] == "server":
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    h = grpc.method_handlers_generic_handler(
        "slim.Echo", {"Say": grpc.unary_unary_rpc_method_handler(echo)})
    s.add_generic_rpc_handlers((h,))
    s.add_insecure_port("[::]:" + sys.argv[2])
    s.start()
    print("listening", flush=True)
    s.wait_for_termination()
else:
    with grpc.insecure_channel(sys.argv[2]) as ch:
        print(ch.unary_unary("/slim.Echo/Say")(sys.argv[3].encode(), timeout=10).decode())
EOF
bg grpc h2/p1 --slim "$PY" "$TMP/grpc_echo.py" server 50051
wait_for 30 grep -q listening "$TMP/grpc.log"
wait_for 10 sh -c "'$BIN/slimctl' -s '$S2' listeners | grep -q ':50051 '"
a0=$(accepts)
out=$(in_slim h1/p1 "$PY" "$TMP/grpc_echo.py" client "$srv:50051" "ping$$")
log "  $out"
grep -Eq "^echo:ping$$ from ipv6:(%5B)?\[?::ffff:10\.244\.1\.2" <<<"$out" ||
	grep -Eq "^echo:ping$$ from ipv4:10\.244\.1\.2:" <<<"$out" ||
	fail "gRPC answer: $out"
assert_ge "$(( $(accepts) - a0 ))" 1 "gRPC connections the server's host accepted over slim"
log "ok"
