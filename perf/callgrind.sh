#!/usr/bin/env bash
# Instructions per operation on the hit path, counted by callgrind (repeatable on a noisy
# machine, unlike times). Each loop runs N and 2N times inside a function callgrind collects
# alone; the difference divided by N is one operation, loop overhead included, setup excluded.
#
#   bash perf/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind > /dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -p perf --bin instructions 2> /dev/null || cargo build --release -p perf --bin instructions
bin=target/release/instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=10000

count() { # loop iterations -> instructions collected inside measured_<loop>
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" --toggle-collect="*measured_$1*" \
    "$bin" "$1" "$2" > /dev/null 2>&1
  awk '/^summary:|^totals:/ {print $2; exit}' "$out/cg"
}

printf '%-14s %12s   %s\n' "loop" "instr/op" "what"
for loop in code_hit papaya_u64 dispatch_hit dispatch_signature papaya_key std_key full_hit one_call one_call_floor miss; do
  a=$(count "$loop" "$n")
  b=$(count "$loop" "$((2 * n))")
  case $loop in
    code_hit) what="CompilerCache::compile, hit in the current world" ;;
    papaya_u64) what="floor: pinned papaya get of a u64 key" ;;
    dispatch_hit) what="Guard::dispatch, cached, 2 argument types" ;;
    dispatch_signature) what="Guard::dispatch_signature, cached, the same call interned" ;;
    papaya_key) what="floor: pinned papaya get of a (u32, u32, [Ty; 2]) key" ;;
    std_key) what="floor: std HashMap (Fx) get of the same key" ;;
    full_hit) what="dispatch then code-cache hit" ;;
    one_call) what="Engine::pin, dispatch_signature, code-cache hit, unpin" ;;
    one_call_floor) what="floor: papaya (seize) pin and two pinned papaya gets of a u64 key" ;;
    miss) what="dispatch miss then compilation of a fresh instance (trivial phases)" ;;
  esac
  awk -v a="$a" -v b="$b" -v n="$n" -v l="$loop" -v w="$what" \
    'BEGIN { printf "%-14s %12.1f   %s\n", l, (b - a) / n, w }'
done
