#!/usr/bin/env bash
# Side-by-side harness: flowhook (without scripts, with the shipped
# scripts, and without scripts but with the Kafka sink on, publishing every
# event to a local tansu broker), nfcapd (nfdump) and nfacctd (pmacct) receive the identical
# stream from `flowhook generate` on loopback, one collector at a time, each
# with an 8 MiB socket receive buffer (as the kernel reports it) and its
# normal output. For every run it reports the packets the collector accounted
# in its output against the packets sent (kept %), its CPU-seconds (user+sys
# from wait4, children included) and its peak RSS; it steps the send rate to
# find each collector's highest loss-free rate, for NetFlow v9 and IPFIX and
# for 1 and 64 exporters, and prints markdown tables with ratios to nfcapd
# (the tables of docs/performance.md).
#
#   benches/compare.sh            # the full run (under 10 minutes here)
#   benches/compare.sh --smoke    # seconds, low rate; fails unless every collector kept everything
#
# Settings (environment): DURATION seconds per run (3), RATES datagrams/s per
# step, 0 = flat out ("20000 40000 0"), CPU_RATE the step whose CPU
# figures fill the table (20000), CPU_ROUNDS how many times every collector
# runs that step (2: once with the other steps, then once more after every
# collector's steps; the table takes each collector's best round, so a slow
# spell of this shared machine does not decide a ratio), VERSIONS ("9 10"), EXPORTERS ("1 64"),
# FLOWS (100000), RECORDS per datagram (30), COLLECTORS
# ("flowhook flowhook+scripts flowhook+kafka nfcapd nfacctd"), RESULTS (TSV
# of every run). flowhook+kafka needs `tansu` (a Kafka-protocol broker; the
# first run installs it with cargo, 10–15 minutes on 2 cores); its CPU is
# flowhook's alone, and a run where the sink could not deliver every message
# counts as keeping nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0
[[ ${1:-} == --smoke ]] && SMOKE=1
if ((SMOKE)); then
  DURATION=${DURATION:-2}
  RATES=${RATES:-2000}
  CPU_RATE=${CPU_RATE:-2000}
  EXPORTERS=${EXPORTERS:-"1 4"}
  FLOWS=${FLOWS:-6000}
else
  DURATION=${DURATION:-3}
  RATES=${RATES:-"20000 40000 0"}
  CPU_RATE=${CPU_RATE:-20000}
  EXPORTERS=${EXPORTERS:-"1 64"}
  FLOWS=${FLOWS:-100000}
fi
VERSIONS=${VERSIONS:-"9 10"}
RECORDS=${RECORDS:-30}
CPU_ROUNDS=${CPU_ROUNDS:-$((SMOKE ? 1 : 2))}
COLLECTORS=${COLLECTORS:-"flowhook flowhook+scripts flowhook+kafka nfcapd nfacctd"}
RCVBUF=8388608

need=()
command -v nfcapd >/dev/null 2>&1 || need+=(nfdump)
command -v nfacctd >/dev/null 2>&1 || need+=(pmacct)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# flowhook is built with the Kafka sink, whose librdkafka is built from source
for c in cmake g++ make pkg-config; do command -v "$c" >/dev/null 2>&1 || need+=("$c"); done
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
if ((${#need[@]})); then
  echo "compare: installing ${need[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  $SUDO pkill -x nfcapd 2>/dev/null || true
  $SUDO pkill -x nfacctd 2>/dev/null || true
fi

TANSU=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
if [[ " $COLLECTORS " == *" flowhook+kafka "* && ! -x $TANSU ]]; then
  echo "compare: installing tansu (a Kafka-protocol broker) with cargo" >&2
  cargo install --quiet --locked tansu --version 0.6.0 --features dynostore
fi

cargo build --release --locked --quiet --features kafka
BIN=$ROOT/target/release/flowhook
WORK=$(mktemp -d /tmp/flowhook-compare.XXXXXX)
RESULTS=${RESULTS:-$WORK/results.tsv}
cleanup() {
  pkill -P $$ 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# one broker for every flowhook+kafka run (its CPU is not flowhook's)
KAFKA=""
if [[ " $COLLECTORS " == *" flowhook+kafka "* ]]; then
  kport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  KAFKA=127.0.0.1:$kport
  "$TANSU" broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
    --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null && break
    sleep 0.1
  done
  "$TANSU" topic create --broker "tcp://$KAFKA" --partitions 4 flowhook.events >/dev/null
fi

# cputime FILE CMD...: runs CMD and writes "user sys peak_rss_kb" of it and
# its children to FILE, from wait4, to the microsecond (GNU time prints
# hundredths: 4 % of a 0.25 CPU-s run)
cputime() {
  local out=$1
  shift
  exec python3 -c '
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{ru.ru_utime:.6f} {ru.ru_stime:.6f} {ru.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
' "$out" "$@"
}

# rx queue bytes of the UDP socket bound to 127.0.0.1:$1 (empty when none)
rx_queue() {
  local hex
  hex=$(printf '0100007F:%04X' "$1")
  awk -v a="$hex" '
    function hex2dec(h,   i, n) { n = 0; h = toupper(h)
      for (i = 1; i <= length(h); i++) n = n * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
      return n }
    $2 == a { split($5, q, ":"); print hex2dec(q[2]) }' /proc/net/udp
}

# a UDP port nothing on 127.0.0.1 uses
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    [[ -z $(rx_queue "$p") ]] && echo "$p" && return
  done
}

wait_listening() {
  for _ in $(seq 1 100); do
    [[ -n $(rx_queue "$1") ]] && return 0
    sleep 0.05
  done
  echo "compare: nothing listens on UDP $1" >&2
  return 1
}

wait_drained() {
  for _ in $(seq 1 200); do
    [[ $(rx_queue "$1") == 0 ]] && break
    sleep 0.05
  done
  sleep 0.5
}

# run_one COLLECTOR VERSION EXPORTERS RATE ROUND -> one TSV line
run_one() {
  local c=$1 v=$2 e=$3 rate=$4 round=$5
  local d=$WORK/run
  rm -rf "$d"
  mkdir -p "$d"
  local port
  port=$(free_port)
  local stop_sig=TERM name
  case $c in
    flowhook | flowhook+scripts | flowhook+kafka)
      local scripts=$d/no-scripts
      [[ $c == flowhook+scripts ]] && scripts=$ROOT/scripts
      local kafka=()
      [[ $c == flowhook+kafka ]] && kafka=("FLOWHOOK__KAFKA__BROKERS=$KAFKA")
      name=flowhook
      # flowhook asks with SO_RCVBUFFORCE, which the kernel doubles like every request
      FLOWHOOK__INGEST__LISTEN=127.0.0.1:$port \
        FLOWHOOK__INGEST__RECV_BUFFER_BYTES=$((RCVBUF / 2)) \
        FLOWHOOK__METRICS__LISTEN=127.0.0.1:0 \
        FLOWHOOK__OUTPUT__PATH=$d/out.jsonl \
        FLOWHOOK__STATE__DIR=$d/state \
        FLOWHOOK__SCRIPTS__DIR=$scripts \
        FLOWHOOK__LOG__LEVEL=warn,flowhook::output::kafka=info \
        cputime "$d/time" env "${kafka[@]}" "$BIN" serve >"$d/log" 2>&1 &
      ;;
    nfcapd)
      name=nfcapd
      mkdir -p "$d/nf"
      cputime "$d/time" \
        nfcapd -b 127.0.0.1 -p "$port" -B "$RCVBUF" -w "$d/nf" -t 3600 >"$d/log" 2>&1 &
      ;;
    nfacctd)
      name=nfacctd
      stop_sig=INT # nfacctd's core process ignores SIGTERM
      cat >"$d/nfacctd.conf" <<EOF
daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: $port
nfacctd_pipe_size: $RCVBUF
plugins: print[p]
plugin_pipe_size[p]: 104857600
plugin_buffer_size[p]: 102400
aggregate[p]: src_host, dst_host, src_port, dst_port, proto
print_output[p]: csv
print_output_file[p]: $d/out.csv
print_output_file_append[p]: true
print_refresh_time[p]: 3600
print_cache_entries[p]: 65537
EOF
      cputime "$d/time" nfacctd -f "$d/nfacctd.conf" >"$d/log" 2>&1 &
      ;;
  esac
  local tpid=$!
  wait_listening "$port"
  local gen t0=$SECONDS
  gen=$("$BIN" generate --target "127.0.0.1:$port" --export-version "$v" --rate "$rate" \
    --duration "${DURATION}s" --exporters "$e" --flows "$FLOWS" --records "$RECORDS" 2>/dev/null)
  wait_drained "$port"
  local pid
  pid=$(pgrep -P "$tpid" -x "$name" | head -1 || true)
  [[ -n $pid ]] && kill -"$stop_sig" "$pid"
  wait "$tpid" || true
  local sent_pk sent_rec sent_dg secs
  sent_pk=$(grep -o '"packets":[0-9]*' <<<"$gen" | cut -d: -f2)
  sent_rec=$(grep -o '"records":[0-9]*' <<<"$gen" | cut -d: -f2)
  sent_dg=$(grep -o '"datagrams":[0-9]*' <<<"$gen" | cut -d: -f2)
  secs=$(grep -o '"seconds":[0-9.]*' <<<"$gen" | cut -d: -f2)
  local got=0
  case $c in
    flowhook*)
      got=$(grep -o '"cli2srv.packets":[0-9]*\|"srv2cli.packets":[0-9]*' "$d/out.jsonl" 2>/dev/null |
        awk -F: '{s += $2} END {print s + 0}')
      # with the Kafka sink: only when it delivered every message
      if [[ $c == flowhook+kafka ]] && ! grep -q 'kafka: every message delivered' "$d/log"; then
        echo "compare: flowhook+kafka did not deliver everything: $(grep -m1 'kafka' "$d/log")" >&2
        got=0
      fi
      ;;
    nfcapd)
      got=$(nfdump -R "$d/nf" -N -o null 2>/dev/null | head -1 |
        sed -n 's/.*total packets: \([0-9]*\).*/\1/p')
      ;;
    nfacctd)
      got=$(awk -F, 'NR > 1 {p += $6} END {print p + 0}' "$d/out.csv" 2>/dev/null || echo 0)
      ;;
  esac
  got=${got:-0}
  read -r user sys rss <"$d/time" || { user=0 sys=0 rss=0; }
  awk -v c="$c" -v v="$v" -v e="$e" -v r="$rate" -v sp="$sent_pk" -v sr="$sent_rec" \
    -v sd="$sent_dg" -v g="$got" -v u="$user" -v s="$sys" -v m="$rss" -v t="$secs" -v rd="$round" 'BEGIN {
      kept = sp > 0 ? g / sp : 0; cpu = u + s; acc = sr * kept
      printf "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%.4f\t%.3f\t%.0f\t%d\t%.1f\t%d\n",
        c, v, e, r, sd, sr, sp, g, kept, cpu, (cpu > 0 ? acc / cpu : 0), m, (t > 0 ? sd / t : 0), rd
    }'
}

printf 'collector\tversion\texporters\trate\tdatagrams\trecords\tpackets_sent\tpackets_accounted\tkept\tcpu_s\trecords_per_cpu_s\tpeak_rss_kb\tsent_per_s\tround\n' >"$RESULTS"
for v in $VERSIONS; do
  for e in $EXPORTERS; do
    for c in $COLLECTORS; do
      for r in $RATES; do
        line=$(run_one "$c" "$v" "$e" "$r" 1)
        echo "$line" >>"$RESULTS"
        echo "compare: $line" >&2
      done
    done
    # the CPU step again, every collector in turn
    for ((round = 2; round <= CPU_ROUNDS; round++)); do
      for c in $COLLECTORS; do
        line=$(run_one "$c" "$v" "$e" "$CPU_RATE" "$round")
        echo "$line" >>"$RESULTS"
        echo "compare: $line" >&2
      done
    done
  done
done

# Tables: one per (version, exporters), ratios to nfcapd.
awk -F'\t' -v cpu_rate="$CPU_RATE" -v rates="$RATES" -v rounds="$CPU_ROUNDS" '
  NR == 1 { next }
  {
    k = $2 SUBSEP $3 SUBSEP $1
    # the CPU step: the best round; kept and loss-free steps: the first round
    if ($4 == cpu_rate && $11 > rpc[k]) rpc[k] = $11
    if ($4 == cpu_rate && $12 > rss[k]) rss[k] = $12
    if ($14 > 1) next
    kept[k, $4] = $9
    if ($9 >= 0.99995 && ($4 == 0 ? 1e12 : $4) > best[k]) best[k] = ($4 == 0 ? 1e12 : $4)
    if (!(($2, $3) in seen)) { seen[$2, $3] = 1; order[++n] = $2 SUBSEP $3 }
    if (!($1 in cseen)) { cseen[$1] = 1; cols[++nc] = $1 }
  }
  END {
    nr = split(rates, R, " ")
    for (i = 1; i <= n; i++) {
      split(order[i], ve, SUBSEP)
      printf "\n### %s, %d exporter%s\n\n", (ve[1] == 10 ? "IPFIX" : "NetFlow v" ve[1]), ve[2], (ve[2] == 1 ? "" : "s")
      hdr = "| collector | records per CPU-second at " cpu_rate " datagrams/s" (rounds > 1 ? " (best of " rounds ")" : "") " | vs nfcapd |"
      sep = "|---|---|---|"
      for (j = 1; j <= nr; j++) { hdr = hdr " kept at " (R[j] == 0 ? "flat out" : R[j] "/s") " |"; sep = sep "---|" }
      print hdr " highest loss-free step | peak RSS |"
      print sep "---|---|"
      base = rpc[ve[1], ve[2], "nfcapd"]
      for (j = 1; j <= nc; j++) {
        k = ve[1] SUBSEP ve[2] SUBSEP cols[j]
        line = sprintf("| %s | %.2f M | %s |", cols[j], rpc[k] / 1e6, (base > 0 ? sprintf("%.2f×", rpc[k] / base) : "—"))
        for (q = 1; q <= nr; q++) line = line sprintf(" %.1f%% |", 100 * kept[k, R[q]])
        b = best[k]
        line = line sprintf(" %s | %.0f MiB |", (b == 0 ? "none" : (b == 1e12 ? "flat out" : b "/s")), rss[k] / 1024)
        print line
      }
    }
  }' "$RESULTS"
echo
echo "compare: every run in $RESULTS (kept until exit; set RESULTS to keep it)" >&2

if ((SMOKE)); then
  total=$(awk 'END {print NR - 1}' "$RESULTS")
  bad=$(awk -F'\t' 'NR > 1 && ($8 != $7 || $7 == 0) { print $1 " v" $2 " x" $3 ": " $8 " of " $7 " packets" }' "$RESULTS")
  nbad=$(grep -c . <<<"$bad" || true)
  echo "compare smoke: $((total - nbad)) passed, $nbad failed"
  if [[ -n $bad ]]; then
    echo "compare --smoke: a collector lost records at a low rate:" >&2
    echo "$bad" >&2
    exit 1
  fi
  echo "compare --smoke: every collector accounted every packet" >&2
fi
