#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Differential fuzzing: tests/cthelper_fuzz.py sends one seeded sequence of
# generated NEW/GET/DEL messages (random attribute sets and lengths, nesting
# flags, truncations, duplicate and unknown attributes, oversize strings,
# flag combinations, several messages per datagram, dumps interleaved with
# updates) once to the upstream C nfnetlink_cthelper and once to
# nfnl_cthelper.ko, each starting from an empty table.  Every reply must be
# well-formed, and the errno of every message must be the same for both.
#   FUZZ_MESSAGES=N (default 2000)   FUZZ_SEED=S (default 1)
# The same seed gives the same messages whatever their number, so the
# long mode's first run (seed 1, 10,000 messages) begins with these.
# FUZZ_SEED_FILE=PATH: take the seed from PATH (FUZZ_SEED if it does not
# exist) and leave seed + 1 there, so that scripts/hardening-long can run
# this test several times in one boot with different seeds (tests/run-guest
# allows 900 s per test).
. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"; unload_all' EXIT
count=${FUZZ_MESSAGES:-2000}
seed=${FUZZ_SEED:-1}
if [ -n "${FUZZ_SEED_FILE:-}" ]; then
	[ -s "$FUZZ_SEED_FILE" ] && seed=$(cat "$FUZZ_SEED_FILE")
	echo $((seed + 1)) > "$FUZZ_SEED_FILE"
fi

# fuzz_py ARGS...: "ok"/"not ok" lines become test points.
fuzz_py() {
	local line rc=
	while IFS= read -r line; do
		case $line in
		"ok "*) t_pass "${line#ok }" ;;
		"not ok "*) t_fail "${line#not ok }" ;;
		"__exit "*) rc=${line#__exit } ;;
		"#"*) printf '%s\n' "$line" ;;
		*) printf '# %s\n' "$line" ;;
		esac
	done < <("$PY" -S "$TESTS_DIR/cthelper_fuzz.py" "$@" --seed="$seed" --count="$count" 2>&1; echo "__exit $?")
	t_eq "cthelper_fuzz.py $1 ran to its end" 0 "$rc"
}

for m in c rust; do
	unload_all
	start=$SECONDS
	if "load_$m"; then
		t_pass "[$m] module loaded"
		echo "# [$m] seed $seed, $count messages"
		fuzz_py run "$work/$m.rec"
		echo "# [$m] $((SECONDS - start)) s"
		t_ok "[$m] module unloads after fuzzing" "unload_$m"
	else
		t_fail "[$m] module loaded"
	fi
done

if [ -s "$work/c.rec" ] && [ -s "$work/rust.rec" ]; then
	fuzz_py compare "$work/c.rec" "$work/rust.rec"
else
	t_fail "both modules were fuzzed"
fi
echo "# $(basename "$0"): $SECONDS s"
t_done
