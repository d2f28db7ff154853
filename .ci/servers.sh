#!/usr/bin/env bash
# Starts or stops the real servers the test suite talks to, on loopback:
#   mosquitto on 1883, clickhouse-server on 8123, the tansu Kafka broker on 9092.
# Usage: .ci/servers.sh start|stop|status
# State (configs, data, logs, pids) lives in $IOC_TEST_RUN (default /tmp/ioc-test-servers),
# except ClickHouse's data, in $IOC_TEST_CLICKHOUSE_DATA: by default on tmpfs (/dev/shm) when
# it has 4 GiB free. Every insert creates a part of some 40 files, and the tests drop thousands
# of them. On an ext4 without a journal (as on the hosts this was measured on) the kernel
# checks every inode freed in the last minute or more before it reuses one, and ClickHouse's
# inserts spent about a seventh of a busy machine's CPU there (BENCHMARKS.md). A production
# host keeps its data on a file system with a journal, where that check does not run
# (docs/operations.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
run=${IOC_TEST_RUN:-/tmp/ioc-test-servers}
shm_free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $1 == "tmpfs" { print $4 }' || true)
if [ "${shm_free_kib:-0}" -ge $((4 << 20)) ] && [ -w /dev/shm ]; then
  default_data=/dev/shm/ioc-test-clickhouse
else
  default_data=$run/clickhouse/data
fi
clickhouse_data=${IOC_TEST_CLICKHOUSE_DATA:-$default_data}

wait_for() { # name, command; up to 20 s
  local name=$1; shift
  for _ in $(seq 1 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "servers: $name did not come up; see $run" >&2
  return 1
}

start_one() { # name, command...
  local name=$1; shift
  if [ -f "$run/$name.pid" ] && kill -0 "$(cat "$run/$name.pid")" 2>/dev/null; then
    echo "servers: $name already running (pid $(cat "$run/$name.pid"))"
    return 0
  fi
  setsid "$@" >"$run/$name.out" 2>&1 < /dev/null &
  echo $! > "$run/$name.pid"
}

start() {
  mkdir -p "$run/clickhouse"/{tmp,user_files,format_schemas} "$clickhouse_data"
  sed -e "s#@RUN@#$run#g" -e "s#@DATA@#$clickhouse_data#g" "$here/servers/clickhouse-config.xml" \
    > "$run/clickhouse/config.xml"
  cp "$here/servers/clickhouse-users.xml" "$run/clickhouse/users.xml"

  start_one mosquitto mosquitto -c "$here/servers/mosquitto.conf"
  start_one clickhouse clickhouse-server --config-file="$run/clickhouse/config.xml"
  if command -v tansu >/dev/null 2>&1; then
    start_one tansu tansu broker --listener-url tcp://127.0.0.1:9092 \
      --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/
  fi

  wait_for mosquitto bash -c 'exec 3<>/dev/tcp/127.0.0.1/1883'
  wait_for clickhouse curl -sf http://127.0.0.1:8123/ping
  if command -v tansu >/dev/null 2>&1; then
    wait_for tansu bash -c 'exec 3<>/dev/tcp/127.0.0.1/9092'
  fi
  echo "servers: up (state in $run, ClickHouse's data in $clickhouse_data)"
}

stop() {
  for name in tansu clickhouse mosquitto; do
    if [ -f "$run/$name.pid" ]; then
      pid=$(cat "$run/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$run/$name.pid"
    fi
  done
  echo "servers: stopped"
}

status() {
  for name in mosquitto clickhouse tansu; do
    if [ -f "$run/$name.pid" ] && kill -0 "$(cat "$run/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$run/$name.pid"))"
    else
      echo "$name: stopped"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
