#!/usr/bin/env bash
# Brief fuzzing for CI: builds every cargo-fuzz target (stable toolchain,
# no sanitizer) and runs each for FUZZ_SECONDS (default 15) from its
# committed seed corpus. New inputs go to a temporary directory, so the
# committed seeds stay as they are. Any crash, panic or leak of a target
# fails the script; libFuzzer saves the input under fuzz/artifacts/<target>/.
#
#   fuzz/ci.sh                  # all targets, 15 s each
#   FUZZ_SECONDS=300 fuzz/ci.sh # longer, locally
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

echo "== cargo fuzz build --sanitizer none"
cargo fuzz build --sanitizer none

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
  echo "== fuzz $target for ${FUZZ_SECONDS}s"
  mkdir -p "$work/$target" "corpus/$target"
  cargo fuzz run --sanitizer none "$target" "$work/$target" "corpus/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 2>"$work/$target.log" || {
    tail -40 "$work/$target.log"
    echo "fuzz target $target failed" >&2
    exit 1
  }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$target.log" | tr '\n' ' '
  echo
done
echo "== fuzz ok"
