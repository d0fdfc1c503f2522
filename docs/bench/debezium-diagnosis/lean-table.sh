#!/usr/bin/env bash
# How much of Debezium's drain time is this project's outbox table? Drains 1M events in
# 100-event transactions from two tables, with pg_recvlogical (the walsender's limit) and with
# Debezium's engine alone (the bench runner's `bench.sink=none`: nothing sent to Kafka):
#   contract: the outbox table of migrations/ (created_at timestamptz, polling's seq and
#             published_at) with the bench's ~300-byte payload, as the harness writes it;
#   lean:     id, aggregatetype, aggregateid, type, payload {"i": n} only.
# Run as root after one `scripts/bench` (or any harness run with a Debezium relay), which
# installs the jars under .bench/tools. Prints one line per drain; ~6 minutes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
libs=${OUTBOX_BENCH_TOOLS:-$root/.bench/tools}/debezium-3.6.3.0/libs
bin=/usr/lib/postgresql/15/bin
port=${PORT:-5499}
work=$(mktemp -d /tmp/outbox-lean-XXXXXX)
chown postgres "$work"
cleanup() {
    su postgres -c "$bin/pg_ctl -D $work/pg stop -m immediate" >/dev/null 2>&1 || true
    pkill -f "OutboxRelay.*$work" || true
    rm -rf "$work"
}
trap cleanup EXIT

javac -nowarn -encoding UTF-8 -cp "$libs/*" -d "$work/classes" "$root/crates/bench/debezium/OutboxRelay.java"
su postgres -c "$bin/initdb -D $work/pg -A trust -U postgres" >/dev/null
# The testkit's settings (crates/testkit/src/pg.rs), as in the harness's runs.
cat >>"$work/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
wal_sender_timeout = '10s'
logical_decoding_work_mem = '64kB'
fsync = off
full_page_writes = off
shared_buffers = '64MB'
EOF
su postgres -c "$bin/pg_ctl -D $work/pg -l $work/pg.log start -w" >/dev/null
psql() { command psql -h 127.0.0.1 -p "$port" -U postgres -q -At -v ON_ERROR_STOP=1 "$@"; }

contract_payload="jsonb_build_object('i', i, 'order', md5(i::text), 'customer', 'customer-' || (i % 1000), \
'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (i % 97), 'qty', 1 + i % 5, 'price', 1999), \
jsonb_build_object('sku', 'SKU-' || (i % 89), 'qty', 2, 'price', 4999)), 'note', repeat('x', 120))"

for table in contract lean; do
    psql -c "CREATE DATABASE $table"
    if [ "$table" = contract ]; then
        psql -d "$table" -f "$root/migrations/0002_outbox.sql"
        psql -d "$table" -f "$root/migrations/0003_outbox_polling.sql"
        payload=$contract_payload
    else
        psql -d "$table" -c "CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb)"
        payload="jsonb_build_object('i', i)"
    fi
    psql -d "$table" -c "CREATE PUBLICATION bench_pub FOR TABLE outbox WITH (publish = 'insert')"
    psql -d "$table" -c "SELECT pg_create_logical_replication_slot('recv_$table', 'pgoutput')" >/dev/null
    psql -d "$table" -c "SELECT pg_create_logical_replication_slot('engine_$table', 'pgoutput')" >/dev/null
    psql -d "$table" -c "DO \$\$ BEGIN FOR t IN 1..10000 LOOP
        INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
        SELECT gen_random_uuid(), 'order', 'order-' || (i % 1000), 'OrderCreated', $payload
        FROM generate_series((t - 1) * 100 + 1, t * 100) AS i; COMMIT; END LOOP; END \$\$"
    end=$(psql -d "$table" -c "SELECT pg_current_wal_lsn()")

    start=$(date +%s%N)
    "$bin/pg_recvlogical" -h 127.0.0.1 -p "$port" -U postgres -d "$table" --slot "recv_$table" --start \
        -o proto_version=1 -o publication_names=bench_pub --endpos="$end" -f /dev/null
    echo "$table: pg_recvlogical drained 1M events in $(( ($(date +%s%N) - start) / 1000000 )) ms"

    start=$(date +%s%3N)
    java -cp "$work/classes:$libs/*" OutboxRelay bench.sink=none \
        database.hostname=127.0.0.1 database.port="$port" database.dbname="$table" slot.name="engine_$table" \
        offset.storage.file.filename="$work/offsets-$table.dat" producer.bootstrap.servers=127.0.0.1:1 \
        >"$work/engine-$table.out" 2>"$work/engine-$table.log" &
    pid=$!
    until awk '/^acked/ && $2 >= 1000000 { done = 1 } END { exit !done }' "$work/engine-$table.out"; do
        kill -0 "$pid" || { cat "$work/engine-$table.log"; exit 1; }
        sleep 0.1
    done
    awk -v s="$start" '/^acked/ { if (!f) f = $3; if ($2 >= 1000000) {
        printf "%s: Debezium engine alone: first batch after %.2f s, 1M events after %.2f s (%.2f s after the first)\n",
        t, (f - s) / 1000, ($3 - s) / 1000, ($3 - f) / 1000; exit } }' t="$table" "$work/engine-$table.out"
    kill "$pid"; wait "$pid" || true
done
