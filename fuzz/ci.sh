#!/usr/bin/env bash
# Brief fuzzing for CI: builds every cargo-fuzz target (stable toolchain,
# no sanitizer; the dev profile — unoptimised, overflow checks on — unless
# FUZZ_PROFILE=release) and runs each for FUZZ_SECONDS (default 15) from its
# committed seed corpus. New inputs go to a temporary directory, so the
# committed seeds stay as they are. Any crash, panic or leak of a target
# fails the script; libFuzzer saves the input under fuzz/artifacts/<target>/.
#
#   fuzz/ci.sh                  # all targets, 15 s each
#   FUZZ_SECONDS=300 FUZZ_PROFILE=release fuzz/ci.sh # longer, locally
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
# A 15 s run gains little from optimisation; building release takes
# twice as long (3 min 48 s against 1 min 55 s on 2 cores).
profile_flag=--dev
[[ "${FUZZ_PROFILE:-dev}" == release ]] && profile_flag=""
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

echo "== cargo fuzz build --sanitizer none $profile_flag"
# shellcheck disable=SC2086 # empty for release
cargo fuzz build --sanitizer none $profile_flag

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
  echo "== fuzz $target for ${FUZZ_SECONDS}s"
  mkdir -p "$work/$target" "corpus/$target"
  # shellcheck disable=SC2086
  cargo fuzz run --sanitizer none $profile_flag "$target" "$work/$target" "corpus/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 2>"$work/$target.log" || {
    tail -40 "$work/$target.log"
    echo "fuzz target $target failed" >&2
    exit 1
  }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$target.log" | tr '\n' ' '
  echo
done
echo "== fuzz ok"
