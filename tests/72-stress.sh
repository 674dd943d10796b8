#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Concurrency stress of nfnl_cthelper.ko for STRESS_SECONDS (default 20; the
# traffic and listener go on until each was seen to work, see below):
#   - four tests/cthelper_stress.py workers add / update / delete / GET /
#     dump helpers concurrently, each checking every errno it gets;
#   - TCP (port 2100) and UDP (port 2200) flows from a client namespace to a
#     server namespace over veth, bound by nft ct helper objects to the
#     user-space helpers pin_tcp / pin_udp (which the workers update and
#     try to delete, EBUSY);
#   - an NFQUEUE listener on the helpers' queue that is bound and unbound
#     every second (the unbound phases take the bypass path);
#   - `nfct helper disable` / re-enable toggling of the pinned helpers.
# Afterwards each worker runs a deterministic final phase, and the dump must
# hold exactly the expected helpers without duplicates; then everything is
# torn down and the module must unload.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/nfnl-agent.sh"

DURATION=${STRESS_SECONDS:-20}
NWORKERS=4
CLI=cth-scli-$$
SRV=cth-ssrv-$$
CLI_ADDR=192.0.2.1
SRV_ADDR=192.0.2.2
QUEUE=5
WORK=$(mktemp -d)
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
	wait 2> /dev/null
	agent_stop
	teardown "$CLI" "$SRV"
	rm -rf "$WORK"
}
trap cleanup EXIT

stress_py() { "$PY" -S -B "$TESTS_DIR/cthelper_stress.py" "$@"; }

unload_all
t_ok "load nfnl_cthelper.ko" load_rust
t_ok "create the pinned helpers pin_tcp, pin_udp" stress_py setup

t_ok "two namespaces joined by veth" netns_pair "$CLI" "$CLI_ADDR" "$SRV" "$SRV_ADDR"

t_ok "nft ct helper objects and rules in the server namespace" \
	ip netns exec "$SRV" nft -f - <<-EOF
	table ip cthelper_stress {
		ct helper h_tcp { type "pin_tcp" protocol tcp; l3proto ip; }
		ct helper h_udp { type "pin_udp" protocol udp; l3proto ip; }
		chain pre {
			type filter hook prerouting priority filter; policy accept;
			tcp dport 2100 ct helper set "h_tcp"
			udp dport 2200 ct helper set "h_udp"
		}
	}
EOF

if ! agent_start "$WORK" "$SRV"; then
	t_fail "NFQUEUE agent started"
fi

# Servers and client traffic.
ip netns exec "$SRV" socat -u "TCP-LISTEN:2100,bind=$SRV_ADDR,reuseaddr,fork" \
	OPEN:/dev/null > /dev/null 2>&1 &
pids+=($!)
ip netns exec "$SRV" socat -u "UDP-RECV:2200,bind=$SRV_ADDR" OPEN:/dev/null > /dev/null 2>&1 &
pids+=($!)
: > "$WORK/tcp_ok"; : > "$WORK/tcp_fail"; : > "$WORK/udp"; : > "$WORK/toggles"
# Everything runs for DURATION seconds, beside the workers.  A slow host gets
# less done in that time (under a 3x slowdown, one TCP flow and no queued
# packet in 20 s), so the traffic, toggling and listener loops then go on,
# for at most ten times as long, until a TCP flow has completed and the
# listener has seen a packet: the two things checked below.
end=$(($(date +%s) + DURATION))
last=$((end + 10 * DURATION))
: > "$WORK/queued"
each_once() { [ -s "$WORK/tcp_ok" ] && [ -s "$WORK/queued" ]; }
running() {
	local now
	now=$(date +%s)
	[ "$now" -lt "$end" ] || { [ "$now" -lt "$last" ] && ! each_once; }
}
(
	while running; do
		if echo "stress $SECONDS" | timeout 15 ip netns exec "$CLI" socat -u - \
			"TCP:$SRV_ADDR:2100,connect-timeout=10" 2> /dev/null; then
			echo >> "$WORK/tcp_ok"
		else
			echo >> "$WORK/tcp_fail"
		fi
		echo "stress $SECONDS" | timeout 5 ip netns exec "$CLI" socat -u - \
			"UDP-SENDTO:$SRV_ADDR:2200" 2> /dev/null && echo >> "$WORK/udp"
	done
) &
pids+=($!)

# nfct disable toggling (the agent loop below re-enables).
(
	while running; do
		nfct helper disable pin_tcp inet tcp > /dev/null 2>&1
		nfct helper disable pin_udp inet udp > /dev/null 2>&1
		echo toggle >> "$WORK/toggles"
		sleep 1
	done
) &
pids+=($!)

# The workers.
wpids=()
for k in $(seq 0 $((NWORKERS - 1))); do
	stress_py worker "$k" "$DURATION" > "$WORK/w$k.out" 2>&1 &
	wpids+=($!)
done

# The NFQUEUE listener comes and goes; the agent also re-enables the helpers.
# `agent stats` answers "packets=N marker=..." for the packets since it last
# asked.
binds=0 queued=0
count_queued() {
	local n
	agent stats
	n=${AREPLY#packets=}
	n=${n%% *}
	[[ $n =~ ^[0-9]+$ ]] || return 0
	queued=$((queued + n))
	[ "$queued" -gt 0 ] && echo >> "$WORK/queued"
	return 0
}
while running; do
	agent bind "$QUEUE"
	[ "$AREPLY" = ok ] && binds=$((binds + 1))
	agent set pin_tcp inet tcp status=enabled
	agent set pin_udp inet udp status=enabled
	sleep 1
	count_queued
	agent unbind "$QUEUE"
	sleep 1
done

for k in "${!wpids[@]}"; do
	if wait "${wpids[$k]}"; then
		t_pass "worker $k: every answer as predicted"
	else
		t_fail "worker $k: every answer as predicted"
	fi
	sed 's/^/worker '"$k"': /' "$WORK/w$k.out" | t_diag
done
count_queued
echo "# NFQUEUE binds: $binds, listener saw: $queued packets (last: $AREPLY)"
if [ "$queued" -gt 0 ]; then
	t_pass "the enabled helpers queued packets to the listener ($queued)"
else
	t_fail "the enabled helpers queued packets to the listener (none)"
fi
echo "# nfct toggles: $(wc -l < "$WORK/toggles")"
ntcp=$(wc -l < "$WORK/tcp_ok")
echo "# flows: tcp ok=$ntcp tcp failed=$(wc -l < "$WORK/tcp_fail") udp sent=$(wc -l < "$WORK/udp")"
if [ "$ntcp" -gt 0 ]; then
	t_pass "TCP flows through the helper completed ($ntcp)"
else
	t_fail "TCP flows through the helper completed"
fi
ct=$(ip netns exec "$SRV" conntrack -L 2> /dev/null | grep -o 'helper=pin_[a-z]*' | sort | uniq -c | tr '\n' ' ')
echo "# conntracks bound to helpers: $ct"
# Informational: a flow whose queue verdict was bypassed is never
# confirmed, and under TCG few flows complete, so none may be left.

# Deterministic end state.
out=$(stress_py final "$NWORKERS" 2>&1)
while IFS= read -r line; do
	case $line in
	"ok "*) t_pass "${line#ok }" ;;
	"not ok "*) t_fail "${line#not ok }" ;;
	*) echo "# $line" ;;
	esac
done <<< "$out"

for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
wait "${pids[@]}" 2> /dev/null
pids=()
agent_stop
t_ok "delete the nft table" ip netns exec "$SRV" nft delete table ip cthelper_stress
ip netns del "$CLI"; ip netns del "$SRV"
t_ok "flush every helper (retrying while nft still holds them)" retry 40 nfct helper flush
t_eq "table empty" "" "$(nfct helper list 2>&1)"
t_ok "module unloads" retry 20 rmmod nfnl_cthelper
echo "# $(basename "$0"): $SECONDS s"
t_done
