#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# nfct helper round trips (add, list, get, disable, delete, flush) and the
# error paths nfct 1.4.7 can provoke.  The same suite runs against our module
# and then against the upstream C module, so every expectation is checked
# against the reference too: a point failing only under [rust] is a behaviour
# difference, one failing under both is a wrong expectation.
#
# Every program start costs seconds in the TCG guest, so parsing is done in
# bash and each nfct call is there for a reason.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/nfnl-agent.sh"

NFT_TABLE=nfct_test_busy
WORK=$(mktemp -d)

cleanup() {
	agent_stop
	nft delete table ip "$NFT_TABLE" 2> /dev/null
	rmmod nf_conntrack_ftp 2> /dev/null
	teardown
	rm -rf "$WORK"
}
trap cleanup EXIT

# One line per helper, "name=ftp queuenum=0 l3protonum=2 ...", from nfct's
# brace-and-comma listing, so that checks do not depend on its layout.
flat() {
	local l cur=
	while IFS= read -r l; do
		case $l in
		'{') cur= ;;
		$'\t.'*)
			l=${l#$'\t.'}
			l=${l//' '/}
			cur+=" ${l%,}"
			;;
		'};') printf '%s\n' "${cur# }" ;;
		esac
	done
}

line() { # NAME L3NUM L4NUM PRIV_LEN [QUEUE [STATUS]]
	echo "name=$1 queuenum=${5:-0} l3protonum=$2 l4protonum=$3 priv_data_len=$4 status=${6:-disabled}"
}

FTP4=$(line ftp 2 6 24)
FTP6=$(line ftp 10 6 24)
TFTP=$(line tftp 2 17 0)
DHCP6=$(line dhcpv6 10 17 0)
RPC4T=$(line rpc 2 6 16)
RPC4U=$(line rpc 2 17 16)

# t_table DESC LINE...: nfct helper list shows exactly these helpers, in any
# order (the dump walks a hash table).
t_table() {
	local desc=$1 out got want ok=1
	local -a lines=()
	shift
	out=$(nfct helper list 2>&1) || ok=0
	got=$(flat <<< "$out")
	[ -n "$got" ] && mapfile -t lines <<< "$got"
	[ "${#lines[@]}" -eq $# ] || ok=0
	for want in "$@"; do
		[[ $'\n'$got$'\n' == *$'\n'"$want"$'\n'* ]] || ok=0
	done
	if [ "$ok" -eq 1 ]; then
		t_pass "$desc"
	else
		t_fail "$desc"
		{ echo "wanted:"; printf '  %s\n' "$@"; echo "got:"; printf '%s\n' "$out"; } | t_diag
	fi
}

# t_get DESC LINE NFCT_GET_ARGS...: nfct helper get succeeds and prints
# exactly that one helper.
t_get() {
	local desc=$1 want=$2 out got
	shift 2
	if out=$(nfct helper get "$@" 2>&1) && got=$(flat <<< "$out") && [ "$got" = "$want" ]; then
		t_pass "$desc"
	else
		t_fail "$desc"
		printf 'wanted: %s\ngot:\n%s\n' "$want" "$out" | t_diag
	fi
}

# expect_fail DESC MESSAGE CMD...: CMD must fail and say MESSAGE.
expect_fail() {
	local desc=$1 msg=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] && [[ $out == *"$msg"* ]]; then
		t_pass "$desc"
	else
		t_fail "$desc"
		printf 'exit %s, expected failure with "%s"; output:\n%s\n' "$rc" "$msg" "$out" | t_diag
	fi
}

# empty_ok DESC CMD...: CMD succeeds and prints nothing.
empty_ok() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
		t_pass "$desc"
	else
		t_fail "$desc"
		printf 'exit %s, expected success with no output; output:\n%s\n' "$rc" "$out" | t_diag
	fi
}

ENOENT="No such file or directory"
EBUSY="Device or resource busy"
EINVAL="Invalid argument"

# Argument checks nfct makes before it talks to the kernel, the same whatever
# module is loaded, so checked once.  Run with the six helpers in place.
nfct_side_errors() {
	expect_fail "get without a name" "missing helper policy name" nfct helper get
	expect_fail "list with extra arguments" "too many arguments" nfct helper list x
	expect_fail "add of a helper nfct has no policy file for" \
		"that helper is not supported" nfct helper add nosuch inet tcp
	expect_fail "add of ftp over udp (no such policy)" \
		"that helper is not supported" nfct helper add ftp inet udp
	expect_fail "add with an unknown l3 family" "unknown layer 3 protocol" \
		nfct helper add ftp ipx tcp
	expect_fail "add with an unsupported l4 protocol" "unsupported layer 4 protocol" \
		nfct helper add ftp inet sctp
	expect_fail "add without a protocol" "missing parameters" nfct helper add ftp inet
	t_table "rejected commands left the table alone" \
		"$FTP4" "$FTP6" "$TFTP" "$DHCP6" "$RPC4T" "$RPC4U"
}

run_suite() {
	local m=$1 mod out

	unload_all
	if ! "load_$m"; then
		t_fail "[$m] load module"
		return
	fi
	mod=$([ "$m" = rust ] && echo nfnl_cthelper || echo nfnetlink_cthelper)

	empty_ok "[$m] list of the empty table" nfct helper list
	# "Not found" needs at least one helper walked past: deleting from an
	# empty table succeeds.
	t_ok "[$m] delete from an empty table succeeds" nfct helper delete nosuch
	t_ok "[$m] flush of an empty table succeeds" nfct helper flush

	t_ok "[$m] add ftp inet tcp" nfct helper add ftp inet tcp
	t_table "[$m] list shows the new helper disabled on queue 0" "$FTP4"
	# nfct sends NEW without NLM_F_EXCL: an existing helper is updated in
	# place, neither duplicated nor refused.
	t_ok "[$m] add ftp inet tcp again updates in place" nfct helper add ftp inet tcp
	t_table "[$m] still a single ftp inet tcp helper" "$FTP4"
	t_agent "[$m] NEW with NLM_F_EXCL on an existing helper: EEXIST" "err EEXIST" \
		set ftp inet tcp excl

	t_ok "[$m] add tftp inet udp" nfct helper add tftp inet udp
	t_ok "[$m] add ftp inet6 tcp (same name, other l3)" nfct helper add ftp inet6 tcp
	t_ok "[$m] add dhcpv6 inet6 udp" nfct helper add dhcpv6 inet6 udp
	t_ok "[$m] add rpc inet tcp" nfct helper add rpc inet tcp
	t_ok "[$m] add rpc inet udp (same name, other l4)" nfct helper add rpc inet udp
	t_table "[$m] list shows all six helpers with their fields" \
		"$FTP4" "$FTP6" "$TFTP" "$DHCP6" "$RPC4T" "$RPC4U"

	t_get "[$m] get ftp inet tcp" "$FTP4" ftp inet tcp
	t_get "[$m] get ftp inet6 tcp picks the inet6 twin" "$FTP6" ftp inet6 tcp
	out=$(nfct helper get ftp 2>&1 | flat)
	[[ $out == "$FTP4" || $out == "$FTP6" ]] &&
		t_pass "[$m] get by name alone returns one ftp helper" ||
		t_fail "[$m] get by name alone returns one ftp helper: $out"

	expect_fail "[$m] get of a missing name without tuple: ENOENT" "$ENOENT" \
		nfct helper get nosuch
	# Upstream answers a GET that carries a tuple and matches nothing with
	# a bare ACK: parsing the tuple overwrites the -ENOENT it started with.
	empty_ok "[$m] get of a missing name with a tuple: success, no helper" \
		nfct helper get nosuch inet tcp
	empty_ok "[$m] get of a known name with another tuple: success, no helper" \
		nfct helper get ftp inet udp

	[ "$m" = rust ] && nfct_side_errors

	# Queue number and status round trip; nfct itself can only disable.
	t_agent "[$m] NEW with queue 5, status enabled" ok \
		set ftp inet tcp queue=5 status=enabled
	t_get "[$m] get shows queue 5, enabled" "$(line ftp 2 6 24 5 enabled)" ftp inet tcp
	t_ok "[$m] add over an enabled helper" nfct helper add ftp inet tcp
	t_get "[$m] add keeps queue and status (it sends neither)" \
		"$(line ftp 2 6 24 5 enabled)" ftp inet tcp
	t_ok "[$m] disable ftp inet tcp" nfct helper disable ftp inet tcp
	# disable is a NEW without a policy: a helper that does not exist yet
	# cannot be created from it.
	expect_fail "[$m] disable of a helper that does not exist: EINVAL" "$EINVAL" \
		nfct helper disable sane inet tcp
	t_table "[$m] only ftp inet tcp changed: disabled, queue kept; no sane" \
		"$(line ftp 2 6 24 5 disabled)" "$FTP6" "$TFTP" "$DHCP6" "$RPC4T" "$RPC4U"
	t_agent "[$m] enable again" ok set ftp inet tcp status=enabled

	# nfct sends l4 0 when given only a family; nothing matches that.
	expect_fail "[$m] delete with only a family (l4 0): ENOENT" "$ENOENT" \
		nfct helper delete ftp inet
	expect_fail "[$m] delete of a known name with another tuple: ENOENT" "$ENOENT" \
		nfct helper delete ftp inet udp
	expect_fail "[$m] delete of a missing name: ENOENT" "$ENOENT" nfct helper delete nosuch
	t_ok "[$m] delete ftp inet6 tcp" nfct helper delete ftp inet6 tcp
	t_ok "[$m] delete rpc by name alone" nfct helper delete rpc
	t_table "[$m] inet6 twin and both rpc helpers gone, the rest intact" \
		"$(line ftp 2 6 24 5 enabled)" "$TFTP" "$DHCP6"

	# A helper held by an nft ct helper object cannot go away.
	if nft -f - <<-EOF
		table ip $NFT_TABLE {
			ct helper h {
				type "ftp" protocol tcp
				l3proto ip
			}
		}
	EOF
	then
		t_pass "[$m] nft ct helper object takes the user-space ftp helper"
		expect_fail "[$m] delete of a helper in use: EBUSY" "$EBUSY" \
			nfct helper delete ftp inet tcp
		# One helper deleted makes the whole flush a success.
		t_ok "[$m] flush with a helper in use succeeds" nfct helper flush
		t_table "[$m] flush removed all but the busy helper" "$(line ftp 2 6 24 5 enabled)"
		t_err "[$m] module cannot be removed while its helper is in use" rmmod "$mod"
		t_ok "[$m] nft table deleted" nft delete table ip "$NFT_TABLE"
		t_ok "[$m] delete succeeds once the nft object is gone" \
			retry 20 nfct helper delete ftp inet tcp
	else
		t_fail "[$m] nft ct helper object takes the user-space ftp helper"
	fi
	empty_ok "[$m] table empty again" nfct helper list

	# A kernel helper with the same name and tuple blocks registration (the
	# conntrack core says EBUSY) and is never reported as a user-space one.
	if modprobe nf_conntrack_ftp; then
		expect_fail "[$m] add ftp while the kernel ftp helper exists: EBUSY" "$EBUSY" \
			nfct helper add ftp inet tcp
		empty_ok "[$m] kernel helpers are not listed" nfct helper list
		expect_fail "[$m] nor returned by get" "$ENOENT" nfct helper get ftp
		rmmod nf_conntrack_ftp
	else
		t_skip "[$m] nf_conntrack_ftp is not available"
	fi
	t_ok "[$m] add ftp once the kernel helper is gone" nfct helper add ftp inet tcp
	t_ok "[$m] add tftp inet udp" nfct helper add tftp inet udp
	t_ok "[$m] flush" nfct helper flush
	empty_ok "[$m] list after flush is empty" nfct helper list
	expect_fail "[$m] get after flush: ENOENT" "$ENOENT" nfct helper get ftp

	t_ok "[$m] unload" rmmod "$mod"
}

start=$SECONDS
if agent_start "$WORK"; then
	run_suite rust
	run_suite c
else
	t_fail "nfnl-tool.py agent starts"
fi
echo "elapsed $((SECONDS - start)) s" | t_diag
t_done
