# SPDX-License-Identifier: GPL-2.0
# Sourced after lib.sh by the tests that drive tests/cthelper_nl_cases.py.

# t_from_py ARGS...: runs cthelper_nl_cases.py ARGS and feeds its
# "ok DESC" / "not ok DESC" / "skip DESC" lines through lib.sh, so that
# numbering and the summary stay with t_done; any other output becomes
# diagnostics.  The script exits 0 once it has gone through all its
# scenarios, whatever their verdicts, so a non-zero exit means it crashed
# and is a failure of its own.  Sets py_rc.
py_rc=
t_from_py() {
	local line start=$SECONDS
	py_rc=
	while IFS= read -r line; do
		case $line in
		"ok "*) t_pass "${line#ok }" ;;
		"not ok "*) t_fail "${line#not ok }" ;;
		"skip "*) t_skip "${line#skip }" ;;
		"__exit "*) py_rc=${line#__exit } ;;
		"#"*) printf '%s\n' "$line" ;;
		*) printf '# %s\n' "$line" ;;
		esac
	# -S: site.py and what it pulls in cost seconds in the TCG guest, and
	# the scenarios need nothing beyond the standard library.
	done < <("$PY" -S "$TESTS_DIR/cthelper_nl_cases.py" "$@" 2>&1; echo "__exit $?")
	echo "# cthelper_nl_cases.py $1: $((SECONDS - start)) s"
	t_eq "cthelper_nl_cases.py $1 ran to its end" 0 "$py_rc"
}

# The scenarios delete their nft table themselves; one that crashed may
# leave it behind, pinning a helper and with it the module.  (nft is slow
# in the TCG guest, hence only after a crash.)
nft_cleanup() {
	[ "$py_rc" = 0 ] || nft delete table inet nfnl_cthelper_test 2>/dev/null
	true
}
