#!/usr/bin/env bash
# A Spark standalone cluster on this machine's loopback address, from the `spark` Maven profile's own classpath
# (nothing to download): one master and two workers with one core each. What a user runs to try the cluster path on
# a laptop, and what the cluster tests run.
#
#   scripts/spark-cluster.sh start     build the Spark installation under target/, start master and workers, wait
#                                      until every worker is registered (prints the master URL)
#   scripts/spark-cluster.sh submit --class MAIN JAR [ARGS...]
#                                      Spark's own spark-submit against this cluster (deploy mode client)
#   scripts/spark-cluster.sh status    which of the processes started here are alive
#   scripts/spark-cluster.sh stop      stop exactly the processes this script started (and the executors their
#                                      workers launched), by the PIDs it wrote
#
# Settings (environment): SPARK_CLUSTER_DIR [target/spark-cluster], SPARK_MASTER_PORT [7077],
# SPARK_MASTER_WEBUI_PORT [8080], SPARK_WORKERS [2], SPARK_WORKER_MEMORY [3g], SPARK_CLUSTER_TIMEOUT seconds to wait
# for the workers [90].
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${SPARK_CLUSTER_DIR:-target/spark-cluster}
MASTER_PORT=${SPARK_MASTER_PORT:-7077}
MASTER_UI_PORT=${SPARK_MASTER_WEBUI_PORT:-8080}
WORKERS=${SPARK_WORKERS:-2}
WORKER_MEMORY=${SPARK_WORKER_MEMORY:-3g}
TIMEOUT=${SPARK_CLUSTER_TIMEOUT:-90}
HOST=127.0.0.1
MASTER_URL="spark://$HOST:$MASTER_PORT"
SPARK_HOME_DIR="$(pwd)/$DIR/spark-home"
# JDK 17 keeps these closed; Spark 3.1 reaches into them (the same flags as the profile's tests).
JVM_FLAGS=(--add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.lang.invoke=ALL-UNNAMED)

# A Spark installation as the worker expects one: SPARK_HOME with a RELEASE file and jars/ holding the classpath (the
# profile's compile classpath: Spark 3.1.2, Scala 2.12, and DL4J, which a real installation would not have; the job
# jar brings its own). Made once per pom.xml.
make_spark_home() {
  if [[ -f "$SPARK_HOME_DIR/RELEASE" && "$SPARK_HOME_DIR/RELEASE" -nt pom.xml ]]; then
    return
  fi
  rm -rf "$SPARK_HOME_DIR"
  mkdir -p "$SPARK_HOME_DIR/jars"
  if ! mvn -q -B -Djavacpp.platform=linux-x86_64 -Pspark dependency:build-classpath -Dmdep.includeScope=compile \
      -Dmdep.outputFile="$SPARK_HOME_DIR/classpath.txt" >"$SPARK_HOME_DIR/maven.log" 2>&1; then
    cat "$SPARK_HOME_DIR/maven.log" >&2
    exit 1
  fi
  tr ':' '\n' <"$SPARK_HOME_DIR/classpath.txt" | while read -r jar; do
    ln -s "$jar" "$SPARK_HOME_DIR/jars/"
  done
  echo "Spark 3.1.2 (Scala 2.12) from the spark Maven profile's dependencies" >"$SPARK_HOME_DIR/RELEASE"
}

alive() {
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Starts one daemon in the background with its own log and PID file.
launch() {
  local name=$1
  shift
  SPARK_HOME="$SPARK_HOME_DIR" SPARK_SCALA_VERSION=2.12 SPARK_LOCAL_IP=$HOST \
    java "${JVM_FLAGS[@]}" -Xmx512m -cp "$SPARK_HOME_DIR/jars/*" "$@" >"$DIR/logs/$name.log" 2>&1 &
  echo $! >"$DIR/pids/$name.pid"
}

registered_workers() {
  grep -c "Registering worker" "$DIR/logs/master.log" 2>/dev/null || true
}

start() {
  if alive "$DIR/pids/master.pid"; then
    echo "already running: $MASTER_URL (scripts/spark-cluster.sh stop first)" >&2
    exit 1
  fi
  make_spark_home
  mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/work"
  launch master org.apache.spark.deploy.master.Master --host $HOST --port "$MASTER_PORT" \
    --webui-port "$MASTER_UI_PORT"
  for i in $(seq 1 "$WORKERS"); do
    launch "worker-$i" org.apache.spark.deploy.worker.Worker --host $HOST --cores 1 --memory "$WORKER_MEMORY" \
      --webui-port 0 --work-dir "$DIR/work" "$MASTER_URL"
  done
  local deadline=$((SECONDS + TIMEOUT))
  while (( $(registered_workers) < WORKERS )); do
    for pid_file in "$DIR"/pids/*.pid; do
      if ! alive "$pid_file"; then
        echo "$(basename "$pid_file" .pid) exited; its log:" >&2
        tail -20 "$DIR/logs/$(basename "$pid_file" .pid).log" >&2
        stop
        exit 1
      fi
    done
    if (( SECONDS > deadline )); then
      echo "only $(registered_workers) of $WORKERS workers registered within ${TIMEOUT}s; logs in $DIR/logs" >&2
      stop
      exit 1
    fi
    sleep 1
  done
  echo "Spark master $MASTER_URL with $WORKERS workers (1 core, $WORKER_MEMORY each); web UI" \
    "http://$HOST:$MASTER_UI_PORT; logs in $DIR/logs"
}

# Stops what start() launched: the executors each worker launched (its child processes, found by parent PID before
# the worker goes), then the workers and the master; SIGKILL for whatever is still up after 10 s.
stop() {
  [[ -d "$DIR/pids" ]] || { echo "nothing started from $DIR"; return; }
  local pids=()
  for pid_file in "$DIR"/pids/*.pid; do
    [[ -f "$pid_file" ]] || continue
    local pid
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null; then
      pids+=($(ps -o pid= --ppid "$pid" || true) "$pid")
    fi
    rm -f "$pid_file"
  done
  if (( ${#pids[@]} == 0 )); then
    echo "nothing running"
    return
  fi
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do
    local left=()
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null && left+=("$pid")
    done
    (( ${#left[@]} == 0 )) && { echo "stopped ${#pids[@]} processes"; return; }
    sleep 0.1
  done
  kill -9 "${left[@]}" 2>/dev/null || true
  echo "stopped ${#pids[@]} processes (${#left[@]} with SIGKILL)"
}

status() {
  local any=1
  for pid_file in "$DIR"/pids/*.pid; do
    [[ -f "$pid_file" ]] || continue
    if alive "$pid_file"; then
      echo "$(basename "$pid_file" .pid): running, PID $(cat "$pid_file")"
      any=0
    else
      echo "$(basename "$pid_file" .pid): not running"
    fi
  done
  (( any == 0 )) && echo "master $MASTER_URL, $(registered_workers) worker registrations"
  return $any
}

submit() {
  alive "$DIR/pids/master.pid" || { echo "no cluster running: scripts/spark-cluster.sh start" >&2; exit 1; }
  SPARK_HOME="$SPARK_HOME_DIR" SPARK_SCALA_VERSION=2.12 SPARK_LOCAL_IP=$HOST \
    java "${JVM_FLAGS[@]}" -cp "$SPARK_HOME_DIR/jars/*" org.apache.spark.deploy.SparkSubmit \
    --master "$MASTER_URL" --deploy-mode client \
    --conf spark.driver.host=$HOST --conf spark.driver.bindAddress=$HOST \
    --conf "spark.executor.extraJavaOptions=${JVM_FLAGS[*]}" "$@"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  submit) shift; submit "$@" ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
