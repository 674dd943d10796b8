# SPDX-License-Identifier: GPL-2.0
# Shared helpers for the kselftest-style scripts in tests/ (sourced, run in
# the guest as root).  Each script prints TAP 13 and ends with
# "N passed, N failed"; its exit status is 0 only if nothing failed.

set -u
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NFNL_TOP=${NFNL_TOP:-$(cd "$TESTS_DIR/.." && pwd)}
NFNL_CTHELPER_KO=${NFNL_CTHELPER_KO:-$NFNL_TOP/nfnl_cthelper.ko}
PY=/usr/bin/python3

_t_num=0
_t_pass=0
_t_fail=0
_t_skip=0

echo "TAP version 13"

t_pass() { _t_num=$((_t_num + 1)); _t_pass=$((_t_pass + 1)); echo "ok $_t_num $*"; }
t_fail() { _t_num=$((_t_num + 1)); _t_fail=$((_t_fail + 1)); echo "not ok $_t_num $*"; }
t_skip() { _t_num=$((_t_num + 1)); _t_skip=$((_t_skip + 1)); echo "ok $_t_num # SKIP $*"; }
t_diag() { sed 's/^/# /'; }

# t_ok DESCRIPTION COMMAND...: passes if COMMAND exits 0.
t_ok() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		t_pass "$desc"
	else
		t_fail "$desc"
		printf '%s\n' "$out" | tail -n 20 | t_diag
	fi
}

# t_err DESCRIPTION COMMAND...: passes if COMMAND exits non-zero.
t_err() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		t_fail "$desc (unexpectedly succeeded)"
		printf '%s\n' "$out" | tail -n 20 | t_diag
	else
		t_pass "$desc"
	fi
}

# t_eq DESCRIPTION EXPECTED ACTUAL
t_eq() {
	if [ "$2" = "$3" ]; then
		t_pass "$1"
	else
		t_fail "$1"
		printf 'expected: %s\nactual:   %s\n' "$2" "$3" | t_diag
	fi
}

t_done() {
	echo "1..$_t_num"
	echo "$_t_pass passed, $_t_fail failed, $_t_skip skipped"
	[ "$_t_fail" -eq 0 ]
	exit
}

# Loading and unloading the modules under test.
mod_loaded() { [ -d "/sys/module/$1" ]; }
load_rust() { mod_loaded nfnl_cthelper || insmod "$NFNL_CTHELPER_KO"; }
unload_rust() { ! mod_loaded nfnl_cthelper || rmmod nfnl_cthelper; }
load_c() { mod_loaded nfnetlink_cthelper || modprobe nfnetlink_cthelper; }
unload_c() { ! mod_loaded nfnetlink_cthelper || rmmod nfnetlink_cthelper; }
unload_all() { unload_rust 2>/dev/null; unload_c 2>/dev/null; true; }

# retry TRIES COMMAND...: runs COMMAND (quietly) until it succeeds, at most
# TRIES times, RETRY_DELAY (default 0.5) seconds apart.
retry() {
	local n=$1
	shift
	while ! "$@" > /dev/null 2>&1; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep "${RETRY_DELAY:-0.5}"
	done
}

# teardown [NETNS...]: what every script's exit trap ends with.  Deletes the
# network namespaces, flushes the helpers of whichever cthelper module is
# loaded and unloads both.  nft drops its helper references from deferred
# work, so a helper (and its module) can stay busy for a moment after its
# table or namespace is gone: the flush is retried, for 15 s whatever
# RETRY_DELAY the calling script chose for its own waits.
teardown() {
	local ns
	for ns in "$@"; do ip netns del "$ns" 2> /dev/null; done
	if mod_loaded nfnl_cthelper || mod_loaded nfnetlink_cthelper; then
		RETRY_DELAY=0.5 retry 30 nfct helper flush
	fi
	unload_all
}

# netns_pair NS1 ADDR1 NS2 ADDR2: two network namespaces joined by veth
# (veth-c in NS1, veth-s in NS2) with the addresses ADDR1/24 and ADDR2/24,
# every link up.
netns_pair() {
	ip netns add "$1" && ip netns add "$3" &&
		ip link add veth-c netns "$1" type veth peer name veth-s netns "$3" &&
		ip -n "$1" addr add "$2/24" dev veth-c &&
		ip -n "$3" addr add "$4/24" dev veth-s &&
		ip -n "$1" link set lo up && ip -n "$1" link set veth-c up &&
		ip -n "$3" link set lo up && ip -n "$3" link set veth-s up
}
