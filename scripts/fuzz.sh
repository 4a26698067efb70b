#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a fixed time each: `scripts/fuzz.sh [seconds]`
# (default 60). Not part of CI. Needs the nightly toolchain; installs cargo-fuzz if missing.
#
# The committed corpus (fuzz/corpus/<target>) seeds each run and is not modified: new inputs
# go to a scratch directory. Crashes are written to fuzz/artifacts/<target>/; reproduce one
# with `cargo +nightly fuzz run -s none -a <target> <file>`. To refresh the committed corpus,
# merge a scratch directory into it and minimise it with `cargo +nightly fuzz cmin`.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.1 --locked
fi
# No sanitizer: the code under test is safe Rust, and panics, overflow (debug assertions, -a)
# and assertion failures are what the targets look for; without ASan each run executes more.
# An input (at most 4 KiB) that takes over 10 s counts as a failure too: nothing may hang.
flags=(-s none -a)
cargo +nightly fuzz build "${flags[@]}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
for target in $(cargo +nightly fuzz list); do
  echo "== $target (${seconds} s)"
  mkdir -p "$scratch/$target" "corpus/$target"
  cargo +nightly fuzz run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 || status=1
done
exit "$status"
