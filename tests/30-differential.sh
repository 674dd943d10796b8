#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Differential test: the scenarios of tests/cthelper_nl_cases.py run once
# against the upstream C nfnetlink_cthelper and once against nfnl_cthelper.ko.
# Every reply must be the same byte for byte (port ids aside, dumps compared
# as multisets), with extended acks on so that error details count too.
# The C run also proves the scenarios' expected errnos are what upstream
# really answers.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/cthelper_nl_tap.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# record LOAD UNLOAD FILE: the scenarios' transcript with one module loaded.
record() {
	unload_all
	t_ok "$1" "$1"
	mod_loaded nfnl_cthelper || mod_loaded nfnetlink_cthelper || return
	# 250 helpers still make a dump of many parts; 20-netlink-errors.sh
	# does 400, and two runs of that would cost a minute of deletes here.
	t_from_py record "$3" --dump-count=250
	nft_cleanup
	t_ok "$2" "$2"
}

# For the "kernel helpers" scenario of both runs, loaded once to save time.
ftp_loaded=0
mod_loaded nf_conntrack_ftp || { modprobe nf_conntrack_ftp && ftp_loaded=1; }

record load_c unload_c "$work/c.rec"
record load_rust unload_rust "$work/rust.rec"
[ "$ftp_loaded" = 0 ] || rmmod nf_conntrack_ftp

if [ -s "$work/c.rec" ] && [ -s "$work/rust.rec" ]; then
	t_from_py compare "$work/c.rec" "$work/rust.rec"
else
	t_fail "both modules were recorded"
fi
echo "# $(basename "$0"): $SECONDS s"
t_done
