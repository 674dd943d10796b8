#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Raw nfnetlink requests against nfnl_cthelper.ko: the errno of every bad
# request, updates, lookups, deletes (also of helpers in use), privilege
# checks and a dump of hundreds of helpers.  The scenarios live in
# tests/cthelper_nl_cases.py so that tests/30-differential.sh can replay
# them against the upstream C module; scenario names given as arguments
# run only those.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/cthelper_nl_tap.sh"

unload_all
t_ok "insmod nfnl_cthelper.ko" load_rust
if mod_loaded nfnl_cthelper; then
	t_from_py check "$@"
	nft_cleanup
	t_ok "rmmod nfnl_cthelper" unload_rust
fi
echo "# $(basename "$0"): $SECONDS s"
t_done
