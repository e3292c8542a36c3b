#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# PostgreSQL across hosts (cluster initialised in $TMP, run as the postgres user, trust only for
# 10.244.0.0/16): psql answers "select 1" and sees itself as 10.244.1.2 (so pg_hba, which knows no
# host address, let it in by its overlay address), pgbench -i and a 4-client 5 s pgbench run
# complete without failed transactions. Both ends shimmed it runs over host sockets; with only the
# server shimmed it works over the overlay.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/apps/app.sh"

need_cmd psql pgbench runuser
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$pgbin/initdb" ] && [ -x "$pgbin/postgres" ] ||
	skip "needs /usr/lib/postgresql/*/bin/{initdb,postgres}"
id postgres >/dev/null 2>&1 || skip "needs the postgres user"
app_lab_up
dst=$(addr "$APP_SERVER")
src=$(addr "$APP_CLIENT")
base=5432

# The server runs as postgres: let it through $TMP (mode 0700) to its own directory only.
chmod 711 "$TMP"
pg=$TMP/pg
mkdir -p "$pg/sock"
chown -R postgres: "$pg"
runuser -u postgres -- "$pgbin/initdb" -D "$pg/data" -U postgres -A trust --no-sync \
	>"$TMP/initdb.log" 2>&1 || { tail -n 20 "$TMP/initdb.log"; fail "initdb"; }
cat >>"$pg/data/postgresql.conf" <<CONF
listen_addresses = '*'
unix_socket_directories = '$pg/sock'
max_connections = 30
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
# Local socket for nothing but the server itself; remote clients only from the overlay.
cat >"$pg/data/pg_hba.conf" <<HBA
local all all trust
host all all 10.244.0.0/16 trust
HBA

export PGCONNECT_TIMEOUT=10
# psql_at SQL: one query from the client pod, unaligned tuples only.
psql_at() {
	app_client psql -h "$dst" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -Atc "$1"
}
# bench ARGS...: pgbench against the server, output in $out.
bench() { app_client pgbench -h "$dst" -p "$port" -U postgres "$@" postgres >"$out" 2>&1; }
# bench_value SED-EXPR: one number from pgbench's report.
bench_value() { sed -n "s/$1/\\1/p" "$out" | tail -n1; }

while read -r case srv cli idx <&3; do
	app_case "$case" "$srv" "$cli" "$idx"
	port=$((base + idx))
	app_server postgres runuser -u postgres -- "$pgbin/postgres" -D "$pg/data" -p "$port"
	app_wait_server "$port"
	wait_for 20 psql_at 'select 1'
	app_measure_begin

	assert_eq "$(psql_at 'select 1')" 1 "case $case: select 1"
	assert_eq "$(psql_at 'select client_addr from pg_stat_activity
		where pid = pg_backend_pid()')" "$src" "case $case: client address the server sees"
	assert_eq "$(psql_at 'select inet_server_addr()')" "$dst" "case $case: server address"

	out=$TMP/pgbench_i_$case.log
	bench -i -q || { tail -n 20 "$out"; fail "case $case: pgbench -i"; }
	assert_eq "$(psql_at 'select count(*) from pgbench_accounts')" 100000 \
		"case $case: pgbench_accounts rows"
	out=$TMP/pgbench_$case.log
	bench -c 4 -j 2 -T 5 || { tail -n 20 "$out"; fail "case $case: pgbench"; }
	tx=$(bench_value '^number of transactions actually processed: \([0-9]*\).*')
	failed=$(bench_value '^number of failed transactions: \([0-9]*\).*')
	tps=$(bench_value '^tps = \([0-9.]*\).*')
	log "case $case: pgbench $tx transactions, ${failed:-?} failed, $tps tps"
	assert_ge "${tx:-0}" 100 "case $case: pgbench transactions"
	assert_eq "${failed:-0}" 0 "case $case: failed transactions"
	# pgbench -i moves the 100000-row table (about 10 MB) to the server.
	app_measure_end $((4 << 20))
	app_stop_server
done 3< <(app_cases server)

app_finish
