#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Unload under traffic, UNLOAD_CYCLES times (default 10): insmod ->
# create helpers (nfct) -> an nft ct helper object in a server namespace
# pins one of them (module refcount > 0) -> TCP flows through the helper
# rule, leaving live conntracks bound to it (the helper is disabled, so the
# conntracks get confirmed with helper=ftp attached; nfct only creates
# helpers it has a user-space definition for, hence ftp/tcp and tftp/udp) and a long-lived
# connection open -> the nft table is deleted -> the refcount must drop to
# 0 -> rmmod while a client keeps connecting.  Odd cycles flush the helpers
# before rmmod, even cycles leave them in the table for the module's exit
# path to unregister.  Expectations are not created: user-space helpers
# only get them from a user-space agent, which this test does not run.
. "$(dirname "$0")/lib.sh"

CYCLES=${UNLOAD_CYCLES:-10}
CLI=cth-ucli-$$
SRV=cth-usrv-$$
CLI_ADDR=192.0.2.1
SRV_ADDR=192.0.2.2
WORK=$(mktemp -d)
pids=()
REF=/sys/module/nfnl_cthelper/refcnt

cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
	wait 2> /dev/null
	ip netns exec "$SRV" nft delete table ip cthelper_unload 2> /dev/null
	ip netns del "$CLI" 2> /dev/null
	ip netns del "$SRV" 2> /dev/null
	if mod_loaded nfnl_cthelper; then retry 30 nfct helper flush; fi
	unload_all
	rm -rf "$WORK"
}
trap cleanup EXIT

retry() {
	local n=$1
	shift
	while ! "$@" > /dev/null 2>&1; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.25
	done
}

refcnt_zero() { [ "$(cat "$REF" 2> /dev/null)" = 0 ]; }

unload_all
t_ok "two namespaces joined by veth" bash -c "
	ip netns add $CLI && ip netns add $SRV &&
	ip link add veth-c netns $CLI type veth peer name veth-s netns $SRV &&
	ip -n $CLI addr add $CLI_ADDR/24 dev veth-c &&
	ip -n $SRV addr add $SRV_ADDR/24 dev veth-s &&
	ip -n $CLI link set lo up && ip -n $CLI link set veth-c up &&
	ip -n $SRV link set lo up && ip -n $SRV link set veth-s up"

ip netns exec "$SRV" socat -u "TCP-LISTEN:2300,bind=$SRV_ADDR,reuseaddr,fork" \
	OPEN:/dev/null > /dev/null 2>&1 &
pids+=($!)
# A client that never stops connecting, across all cycles.
: > "$WORK/conns"
(
	while :; do
		echo x | timeout 5 ip netns exec "$CLI" socat -u - \
			"TCP:$SRV_ADDR:2300,connect-timeout=3" 2> /dev/null && echo >> "$WORK/conns"
		sleep 0.1
	done
) &
pids+=($!)

conns() { wc -l < "$WORK/conns"; }
t_ok "client traffic flows before the cycles" retry 240 bash -c "[ \$(wc -l < $WORK/conns) -gt 0 ]"

ok_cycles=0 max_ref=0 ct_total=0
for c in $(seq 1 "$CYCLES"); do
	fail= long=
	insmod "$NFNL_CTHELPER_KO" || fail="insmod"
	[ -z "$fail" ] && { nfct helper add ftp inet tcp && nfct helper add tftp inet udp &&
		nfct helper disable ftp inet tcp; } > /dev/null 2>&1 || fail=${fail:-"nfct helper add"}
	[ -z "$fail" ] && ip netns exec "$SRV" nft -f - > "$WORK/nft.err" 2>&1 <<-EOF || fail=${fail:-"nft ct helper object"}
		table ip cthelper_unload {
			ct helper h { type "ftp" protocol tcp; l3proto ip; }
			chain pre {
				type filter hook prerouting priority filter; policy accept;
				tcp dport 2300 ct helper set "h"
			}
		}
	EOF
	ref=$(cat "$REF" 2> /dev/null)
	[ "${ref:-0}" -gt "$max_ref" ] && max_ref=$ref
	[ -z "$fail" ] && [ "${ref:-0}" -gt 0 ] || fail=${fail:-"refcount $ref while pinned"}
	# A long-lived connection that stays open over the unload.
	if [ -z "$fail" ]; then
		(sleep 30 | timeout 40 ip netns exec "$CLI" socat -u - \
			"TCP:$SRV_ADDR:2300,connect-timeout=5" 2> /dev/null) &
		long=$!
		n=0
		for _ in $(seq 40); do
			n=$(ip netns exec "$SRV" conntrack -L -p tcp --dport 2300 2> /dev/null | grep -c helper=ftp)
			[ "$n" -gt 0 ] && break
			sleep 0.25
		done
		[ "$n" -gt 0 ] || fail="no conntrack carries helper=ftp"
		ct_total=$((ct_total + n))
	fi
	ip netns exec "$SRV" nft delete table ip cthelper_unload 2> /dev/null ||
		fail=${fail:-"nft delete table"}
	if [ $((c % 2)) -eq 1 ]; then
		retry 40 nfct helper flush || fail=${fail:-"nfct helper flush"}
	fi
	retry 80 refcnt_zero || fail=${fail:-"refcount stays $(cat "$REF")"}
	rmmod nfnl_cthelper 2> "$WORK/rmmod.err" || fail=${fail:-"rmmod: $(cat "$WORK/rmmod.err")"}
	mod_loaded nfnl_cthelper && fail=${fail:-"module still loaded"}
	if [ -n "$long" ]; then
		kill "$long" 2> /dev/null
		wait "$long" 2> /dev/null
	fi
	if [ -n "$fail" ]; then
		t_fail "cycle $c: $fail"
		[ -f "$WORK/nft.err" ] && t_diag < "$WORK/nft.err"
		unload_all
		break
	fi
	ok_cycles=$((ok_cycles + 1))
done
t_eq "$CYCLES unload cycles: refcount back to 0 and rmmod succeeded each time" "$CYCLES" "$ok_cycles"
echo "# cycles=$ok_cycles/$CYCLES max refcnt while pinned=$max_ref conntracks with the helper (sum over cycles)=$ct_total connections=$(conns)"
n=$(conns)
t_ok "traffic still flows after the last unload" retry 120 bash -c "[ \$(wc -l < $WORK/conns) -gt $n ]"
echo "# $(basename "$0"): $SECONDS s"
t_done
