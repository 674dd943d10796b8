#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The help callback on a live TCP flow: a client and a server namespace
# joined by veth, an nft ct helper object in the server namespace assigning
# the user-space "ftp" helper, and an NFQUEUE listener (tests/nfnl-tool.py)
# in the server namespace counting and accepting what the helper queues.
#   a) helper disabled: nothing is queued, the flow goes through;
#   b) helper enabled on queue Q with a listener: the flow's packets reach the
#      listener, which accepts them, and the transfer completes;
#   c) helper enabled, nobody on queue Q: the bypass flag lets traffic pass;
#   d) disabled again with nfct: back to a).
#   e) a conntrack template: `iptables -t raw ... -j CT --helper ftp` then
#      NFQUEUE in the raw table, before conntrack, with a listener that asks
#      for each packet's conntrack and answers with CTA_HELP_INFO: the
#      helper's private data of the template (whose lock conntrack never
#      initialises) is read into NFQA_CT with no lock report, the verdicts
#      leave it alone, and the transfer completes.
# The same cases run with our module and then with the upstream C module,
# which must see the same private data.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/nfnl-agent.sh"

CLI=cth-cli-$$
SRV=cth-srv-$$
CLI_ADDR=192.0.2.1
SRV_ADDR=192.0.2.2
# Not 0, so that a module ignoring the configured queue number shows.
QUEUE=7
WORK=$(mktemp -d)
MARKER="nfnl-cthelper-payload-$$"

cleanup() {
	agent_stop
	teardown "$CLI" "$SRV"
	rm -rf "$WORK"
}
trap cleanup EXIT

# The object must be created while the helper exists, so once per module.
nft_up() {
	# After conntrack (-200), while the new connection is still unconfirmed.
	ip netns exec "$SRV" nft -f - <<-EOF
		table ip cthelper_test {
			ct helper ftp_user {
				type "ftp" protocol tcp
				l3proto ip
			}
			chain pre {
				type filter hook prerouting priority filter; policy accept;
				tcp dport 2100-2199 ct helper set "ftp_user"
			}
		}
	EOF
}

# transfer PORT: the client sends the payload to the server, which must
# receive it byte for byte.  The client retries until the server listens.
transfer() {
	local port=$1 spid crc=1
	rm -f "$WORK/recv"
	timeout 60 ip netns exec "$SRV" socat -u \
		"TCP-LISTEN:$port,bind=$SRV_ADDR,reuseaddr" "CREATE:$WORK/recv" &
	spid=$!
	timeout 60 ip netns exec "$CLI" socat -u "OPEN:$WORK/payload" \
		"TCP:$SRV_ADDR:$port,connect-timeout=10,retry=100,interval=0.3" && crc=0
	[ "$crc" -eq 0 ] || kill "$spid" 2> /dev/null
	wait "$spid" && [ "$crc" -eq 0 ] && cmp -s "$WORK/payload" "$WORK/recv"
}

ct_entries() {
	ip netns exec "$SRV" conntrack -L -p tcp --dport "$1" 2> /dev/null
}

# run_case TAG PORT LISTEN_QUEUE EXPECT
# LISTEN_QUEUE "-" binds no queue: the agent then listens to nothing.
# EXPECT: "queued" (the listener gets the flow), "quiet" (nothing queued,
# connection confirmed with the helper), "bypass" (queue verdict, nobody
# listening).
run_case() {
	local tag=$1 port=$2 lq=$3 expect=$4 pkts entries
	if [ "$lq" != - ]; then
		agent bind "$lq"
		if [ "$AREPLY" != ok ]; then
			t_fail "$tag: bind NFQUEUE $lq ($AREPLY)"
			return
		fi
	fi
	agent stats # forget anything from earlier steps

	if transfer "$port"; then
		t_pass "$tag: payload transferred intact"
	else
		t_fail "$tag: payload transferred intact"
	fi

	entries=$(ct_entries "$port")
	if [ "$expect" = bypass ]; then
		# A bypassed queue verdict resumes after nf_confirm's hook without
		# confirming the conntrack, so no entry may be left; one carrying
		# helper=ftp would mean the helper said NF_ACCEPT instead.
		t_eq "$tag: queue verdict bypassed, conntrack never confirmed" "" "$entries"
	else
		t_eq "$tag: conntrack entry carries helper=ftp" "helper=ftp" \
			"$(grep -o 'helper=[^ ]*' <<< "$entries" | sort -u)"
	fi

	agent stats
	pkts=$(sed -n 's/^packets=\([0-9]*\) .*/\1/p' <<< "$AREPLY")
	if [ "$expect" = queued ]; then
		if [ "${pkts:-0}" -gt 0 ]; then
			t_pass "$tag: listener on queue $lq got the flow's packets ($pkts)"
		else
			t_fail "$tag: listener on queue $lq got the flow's packets ($AREPLY)"
		fi
		t_eq "$tag: queued packets carry the payload" marker=yes "${AREPLY#* }"
	elif [ "$lq" != - ]; then
		t_eq "$tag: nothing queued to queue $lq" "packets=0 marker=no" "$AREPLY"
	fi
	if [ "$lq" != - ]; then
		agent unbind "$lq"
		[ "$AREPLY" = ok ] || t_fail "$tag: unbind NFQUEUE $lq ($AREPLY)"
	fi
}

# template_case M PORT: case e).
HELPINFO=00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210
template_case() {
	local m=$1 port=$2 tq=$((QUEUE + 1)) tag="[$1] e) conntrack template" info splats pkts
	local -a raw=(ip netns exec "$SRV" iptables -t raw)
	splats=$(dmesg | grep -cE 'non-static key|spinlock bad magic|BUG:')
	if ! "${raw[@]}" -A PREROUTING -p tcp --dport "$port" -j CT --helper ftp ||
		! "${raw[@]}" -A PREROUTING -p tcp --dport "$port" -j NFQUEUE --queue-num "$tq"; then
		t_fail "$tag: raw table rules"
		return
	fi
	agent bind "$tq" conntrack "helpinfo=ftp:$HELPINFO"
	t_eq "$tag: listener bound with NFQA_CFG_F_CONNTRACK" ok "$AREPLY"
	agent stats
	if transfer "$port"; then
		t_pass "$tag: payload transferred intact"
	else
		t_fail "$tag: payload transferred intact"
	fi
	agent stats
	pkts=$(sed -n 's/^packets=\([0-9]*\) .*/\1/p' <<< "$AREPLY")
	if [ "${pkts:-0}" -gt 1 ]; then
		t_pass "$tag: the flow's packets were queued with the template ($pkts)"
	else
		t_fail "$tag: the flow's packets were queued with the template ($AREPLY)"
	fi
	# Every packet carries the template, and NFQA_CT shows its private data
	# (data_len bytes): zeros, as conntrack allocated it.  The verdicts'
	# CTA_HELP_INFO does not reach a template: ctnetlink looks the helper up
	# by the conntrack's tuple, which a template does not have, and ignores
	# the attribute (-EOPNOTSUPP, the packet is still accepted).
	agent helpinfo
	info=$AREPLY
	if [[ $info =~ ^(00)+$ ]]; then
		t_pass "$tag: NFQA_CT carries the template's private data, zeros (${#info} hex digits)"
	else
		t_fail "$tag: NFQA_CT carries the template's private data, zeros ($info)"
	fi
	TEMPLATE_INFO[$m]=$info
	t_eq "$tag: no lock or BUG report in the kernel log" "$splats" \
		"$(dmesg | grep -cE 'non-static key|spinlock bad magic|BUG:')"
	agent unbind "$tq"
	"${raw[@]}" -F PREROUTING
}
declare -A TEMPLATE_INFO

run_module() {
	local m=$1 p=$2

	unload_all
	if ! "load_$m"; then
		t_fail "[$m] load module"
		return
	fi
	t_ok "[$m] nfct helper add ftp inet tcp" nfct helper add ftp inet tcp
	# Disabled but already pointing at Q: only the status keeps it quiet.
	t_agent "[$m] queue $QUEUE, still disabled" ok \
		set ftp inet tcp queue=$QUEUE status=disabled
	if ! nft_up; then
		t_fail "[$m] nft ct helper object for the user-space helper"
		return
	fi
	t_pass "[$m] nft ct helper object for the user-space helper"

	run_case "[$m] a) disabled" $((p + 1)) "$QUEUE" quiet

	t_agent "[$m] enable the helper" ok set ftp inet tcp status=enabled
	t_eq "[$m] nfct shows it enabled on queue $QUEUE" "queuenum=$QUEUE status=enabled" \
		"$(nfct helper get ftp inet tcp 2>&1 | tr -d ' \t,.' |
			grep -E '^(queuenum|status)=' | xargs)"
	run_case "[$m] b) enabled, listener" $((p + 2)) "$QUEUE" queued
	run_case "[$m] c) enabled, no listener" $((p + 3)) - bypass

	t_ok "[$m] nfct helper disable ftp inet tcp" nfct helper disable ftp inet tcp
	run_case "[$m] d) disabled again" $((p + 4)) "$QUEUE" quiet
	template_case "$m" $((p + 205))

	ip netns exec "$SRV" nft delete table ip cthelper_test
	ip netns exec "$SRV" conntrack -F 2> /dev/null
	t_ok "[$m] helper deleted once nft let go of it" \
		retry 30 nfct helper delete ftp inet tcp
	t_ok "[$m] unload" retry 20 "unload_$m"
}

{
	echo "$MARKER"
	head -c 30000 /dev/urandom | base64
} > "$WORK/payload"

start=$SECONDS
unload_all
if ! netns_pair "$CLI" "$CLI_ADDR" "$SRV" "$SRV_ADDR"; then
	t_fail "client and server namespaces joined by veth"
elif ! agent_start "$WORK" "$SRV" "$MARKER"; then
	t_fail "NFQUEUE agent in the server namespace"
else
	t_pass "namespaces, veth and NFQUEUE agent"
	run_module rust 2100
	run_module c 2110
	t_eq "e) the template's private data is the same with both modules" \
		"${TEMPLATE_INFO[c]:-none}" "${TEMPLATE_INFO[rust]:-none}"
fi
echo "elapsed $((SECONDS - start)) s" | t_diag
t_done
