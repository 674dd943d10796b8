#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# More of conntrackd's user-space helpers (Debian's 1.4.7) end to end, on
# top of the cthelper subsystem: rpc (portmapper GETPORT over UDP and TCP),
# tftp over IPv6, ssdp, mdns, slp and dhcpv6.  tests/60 covers ftp and
# tftp over IPv4.
#
#   cli 192.0.2.1 ---- 192.0.2.254 rtr 198.51.100.254 ---- 198.51.100.2 srv
#   2001:db8:1::1 ---- 2001:db8:1::fe     2001:db8:2::fe ---- 2001:db8:2::2
#
# The router's forward chain drops everything but "ct state
# established,related" and new connections to the control ports (TCP and
# UDP 111, UDP 69), so the connection a helper is for gets through only as
# RELATED, that is only if conntrackd's helper saw the control traffic and
# created the expectation.  conntrackd runs in the router namespace; the
# helpers are attached there by nft "ct helper" objects, one per helper,
# family and protocol.
#
#   rpc:  rpcbind (Debian's) in the server namespace, where two test
#         programs are registered (PROG 536871265 on UDP 4101 and TCP 4102,
#         PROG + 1 on UDP 4111 and TCP 4112).  conntrackd's rpc helper
#         parses portmapper version 2 GETPORT calls and replies and expects
#         the connection to the port returned: a small Python client
#         (cthelper_protos.py) sends GETPORT for PROG + 1 over UDP and TCP,
#         IPv4 and IPv6, then a NULL call to the port.  Debian's rpcinfo -u
#         and -t ask rpcbind version 4 (RPCBPROC_GETADDR) instead, which
#         the helper does not parse: their outcome (no expectation, the
#         call to the program dropped) is recorded and compared, not
#         asserted.
#   tftp: curl downloads a file over IPv6 from a small Python TFTP server
#         that answers from a new port (the expectation's).
#   ssdp, mdns, slp, dhcpv6: a query from the client to the protocol's
#         multicast group (ssdp 239.255.255.250 / ff05::c, mdns 224.0.0.251
#         / ff02::fb, slp 239.255.255.253 / ff02::116, dhcpv6 ff02::1:2) and
#         a unicast reply from the server to the querier's address and
#         port.  The helpers expect that reply (from any address; mdns and
#         slp: from the protocol's port).  The test kernel has no multicast
#         routing (nor nft dup), so a relay in the router namespace
#         (cthelper_protos.py relay) joins the groups on the client's link,
#         which delivers the queries locally (conntrack runs the helper at
#         the input hook), and sends each on to the same group on the
#         server's link with the querier's source address and port, as a
#         multicast router would.  The queriers use their global addresses
#         (a reply to a link-local one could not be routed).
#
# Per module (ours, then the upstream C one as the oracle):
#   a) helper stubs from "nfct helper add", disabled, no conntrackd: every
#      case fails, and no expectation is created;
#   b) conntrackd configures and enables them: every case succeeds, each
#      with an expectation event naming its user-space helper, its
#      packets queued to conntrackd's queue for that helper, RELATED
#      packets on the router; no nf_conntrack_* helper module loaded.
# Finally the outcomes of both modules must be identical.
#
#   sane, tns, amanda: Python emulations of saned's SANE_NET_START reply
#         (IPv4, IPv6), of a TNS listener's REDIRECT (IPv4) and of
#         amandad's CONNECT reply (IPv4).  conntrackd 1.4.7's amanda helper
#         expects the control connection's source port instead of the
#         announced DATA port: that case asserts the expectation and
#         records (does not assert) the failed transfer.  tns and amanda
#         over IPv6: SKIP (conntrackd's helpers parse IPv4 only).
# Every exec costs about a second in the TCG guest, Python several: the
# script runs inside the router namespace, one Python process serves every
# protocol, one runs every Python client, one relays the multicast
# queries, and the cases of a phase run concurrently.

RTR=cth61-rtr-$$
if [ "${1:-}" != --in-router ] && ip netns add "$RTR" 2>/dev/null; then
	exec ip netns exec "$RTR" bash "$0" --in-router "$RTR"
fi
[ "${1:-}" = --in-router ] && RTR=$2

. "$(dirname "$0")/lib.sh"

PROTOS="$TESTS_DIR/cthelper_protos.py"
CLI=cth61-cli-$$
SRV=cth61-srv-$$
PROG=536871265
RPC_UDP_PORT=4101
RPC_TCP_PORT=4102
# The Python client's program, PROG + 1
RPC2_UDP_PORT=4111
RPC2_TCP_PORT=4112
# Failing cases end on this (seconds): what the router drops is never
# answered.  Cases that should succeed may take this long (a loaded TCG
# host); they end as soon as they have their answer.
FAIL_TIMEOUT=3
OK_TIMEOUT=30
WORK=$(mktemp -d /tmp/cth61.XXXXXX)
FILE=payload.txt
CTD_PID=
EV_PID=
SRVS_PID=
RPCBIND_PID=
RELAY_PID=
AGENT_PID=
declare -A OUTCOME

# conntrackd's helpers: "NAME FAMILY PROTO QUEUE NFT-OBJECT".
HELPERS=(
	"rpc inet tcp 10 rpc4t"
	"rpc inet udp 11 rpc4u"
	"rpc inet6 tcp 12 rpc6t"
	"rpc inet6 udp 13 rpc6u"
	"tftp inet6 udp 14 tftp6"
	"ssdp inet udp 15 ssdp4"
	"ssdp inet6 udp 16 ssdp6"
	"mdns inet udp 17 mdns4"
	"mdns inet6 udp 18 mdns6"
	"slp inet udp 19 slp4"
	"slp inet6 udp 20 slp6"
	"dhcpv6 inet6 udp 21 dhcpv66"
	"sane inet tcp 22 sane4"
	"sane inet6 tcp 23 sane6"
	"tns inet tcp 24 tns4"
	"amanda inet udp 25 amanda4"
)
# The cases: "CASE HELPER-OBJECT" (the helper whose expectation it needs).
CASES=(
	"rpcinfo-u4 rpc4u" "rpcinfo-t4 rpc4t" "rpc-udp4 rpc4u" "rpc-tcp4 rpc4t"
	"rpc-udp6 rpc6u" "rpc-tcp6 rpc6t" "tftp6 tftp6"
	"ssdp4 ssdp4" "ssdp6 ssdp6" "mdns4 mdns4" "mdns6 mdns6"
	"slp4 slp4" "slp6 slp6" "dhcpv6 dhcpv66"
	"sane4 sane4" "sane6 sane6" "tns4 tns4" "amanda4 amanda4"
)

. "$TESTS_DIR/lib-router.sh"

stop_conntrackd() { stop_pid "$CTD_PID"; CTD_PID=; }

router_reset() {
	nft delete table inet cth61 2>/dev/null
	conntrack -F > /dev/null 2>&1
	conntrack -F expect > /dev/null 2>&1
	true
}

cleanup() {
	if [ -n "${CTH61_DEBUG:-}" ]; then
		for f in conntrackd.out events servers.log relay.log rpcbind.log; do
			echo "== $f"; cat "$WORK/$f"
		done 2>&1 | t_diag
	fi
	stop_conntrackd
	stop_pid "$EV_PID"
	stop_pid "$AGENT_PID"
	stop_pid "$RELAY_PID"
	stop_pid "$SRVS_PID"
	stop_pid "$RPCBIND_PID"
	router_reset
	teardown "$CLI" "$SRV" "$RTR"
	rm -rf "$WORK"
}
trap cleanup EXIT

# The firewall: one ct helper object per helper, family and protocol,
# attached in prerouting by destination port.
router_ruleset() {
	local h name family proto queue obj l3 objs=
	for h in "${HELPERS[@]}"; do
		read -r name family proto queue obj <<< "$h"
		l3=ip
		[ "$family" = inet6 ] && l3=ip6
		objs+="ct helper $obj { type \"$name\" protocol $proto; l3proto $l3; }"$'\n'
	done
	nft -f - <<-EOF
		table inet cth61 {
			$objs
			counter rel_tcp { }
			counter rel_udp { }
			chain attach {
				type filter hook prerouting priority filter; policy accept;
				meta nfproto ipv4 tcp dport 111 ct helper set "rpc4t"
				meta nfproto ipv4 udp dport 111 ct helper set "rpc4u"
				meta nfproto ipv6 tcp dport 111 ct helper set "rpc6t"
				meta nfproto ipv6 udp dport 111 ct helper set "rpc6u"
				meta nfproto ipv6 udp dport 69 ct helper set "tftp6"
				meta nfproto ipv4 udp dport 1900 ct helper set "ssdp4"
				meta nfproto ipv6 udp dport 1900 ct helper set "ssdp6"
				meta nfproto ipv4 udp dport 5353 ct helper set "mdns4"
				meta nfproto ipv6 udp dport 5353 ct helper set "mdns6"
				meta nfproto ipv4 udp dport 427 ct helper set "slp4"
				meta nfproto ipv6 udp dport 427 ct helper set "slp6"
				meta nfproto ipv6 udp dport 547 ct helper set "dhcpv66"
				meta nfproto ipv4 tcp dport 6566 ct helper set "sane4"
				meta nfproto ipv6 tcp dport 6566 ct helper set "sane6"
				meta nfproto ipv4 tcp dport 1521 ct helper set "tns4"
				meta nfproto ipv4 udp dport 10080 ct helper set "amanda4"
			}
			chain forward_filter {
				type filter hook forward priority filter; policy drop;
				ct state related meta l4proto tcp counter name "rel_tcp" accept
				ct state related meta l4proto udp counter name "rel_udp" accept
				ct state established accept
				ct state new tcp dport { 111, 1521, 6566 } accept
				ct state new udp dport { 69, 111, 10080 } accept
			}
		}
	EOF
}

write_conntrackd_conf() {
	local h name family proto queue obj
	{
		cat <<-EOF
			General {
				Systemd no
				Syslog no
				LogFile $WORK/conntrackd.log
				LockFile $WORK/conntrackd.lock
				UNIX {
					Path $WORK/conntrackd.ctl
				}
			}
			Helper {
		EOF
		for h in "${HELPERS[@]}"; do
			read -r name family proto queue obj <<< "$h"
			cat <<-EOF
				Type $name $family $proto {
					QueueNum $queue
					QueueLen 1024
					Policy $name {
						ExpectMax 4
						ExpectTimeout 300
					}
				}
			EOF
		done
		echo "}"
	} > "$WORK/conntrackd.conf"
}

# "NAME/FAMILY/PROTO:QUEUE:STATUS ..." of every helper, sorted as listed.
helper_states() {
	local line name='' queue='' l3='' l4='' out=''
	while IFS= read -r line; do
		line=${line%,}
		case $line in
		*".name = "*) name=${line#*= } ;;
		*".queuenum = "*) queue=${line#*= } ;;
		*".l3protonum = "*) l3=${line#*= } ;;
		*".l4protonum = "*) l4=${line#*= } ;;
		*".status = "*) out+="$name/$l3/$l4:$queue:${line#*= }"$'\n' ;;
		esac
	done < <(nfct helper list 2>&1)
	printf '%s' "$out" | sort | tr '\n' ' '
}

# What helper_states should say: every helper with queue Q (or 0) and
# STATUS.
helper_states_want() { # QUEUES(yes|no) STATUS
	local h name family proto queue obj l3 l4 out=''
	for h in "${HELPERS[@]}"; do
		read -r name family proto queue obj <<< "$h"
		l3=2; [ "$family" = inet6 ] && l3=10
		l4=17; [ "$proto" = tcp ] && l4=6
		[ "$1" = yes ] || queue=0
		out+="$name/$l3/$l4:$queue:$2"$'\n'
	done
	printf '%s' "$out" | sort | tr '\n' ' '
}

start_conntrackd() {
	local n
	rm -f "$WORK/conntrackd.lock" "$WORK/conntrackd.ctl"
	n=$(count_in "$WORK/conntrackd.out" 'initialization completed')
	timeout 800 /usr/sbin/conntrackd -C "$WORK/conntrackd.conf" \
		>> "$WORK/conntrackd.out" 2>&1 &
	CTD_PID=$!
	for _ in {1..150}; do
		kill -0 "$CTD_PID" 2>/dev/null || break
		[ "$(count_in "$WORK/conntrackd.out" 'initialization completed')" -gt "$n" ] &&
			return 0
		snooze 0.2
	done
	tail -n 20 "$WORK/conntrackd.out" | t_diag
	return 1
}

# The kernel's own conntrack helpers, which must never be the ones that
# create the expectations.
no_kernel_helpers() {
	local mod rest
	while read -r mod rest; do
		case $mod in
		nf_conntrack_ftp | nf_conntrack_tftp | nf_conntrack_amanda | \
		nf_conntrack_sane | nf_conntrack_sip | nf_conntrack_irc | \
		nf_conntrack_h323 | nf_conntrack_pptp | nf_conntrack_snmp | \
		nf_conntrack_netbios_ns | nf_conntrack_broadcast | \
		nf_conntrack_bridge | nf_conntrack_tns) return 1 ;;
		esac
	done < /proc/modules
}

events_count() {
	local lines
	mapfile -t lines < "$WORK/events"
	echo "${#lines[@]}"
}

# Lines of conntrack -E expect since line $1 that match the glob $2.
events_since() {
	local lines i
	mapfile -t lines < "$WORK/events"
	for ((i = $1; i < ${#lines[@]}; i++)); do
		# shellcheck disable=SC2053 # $2 is a pattern
		[[ ${lines[i]} == $2 ]] && return 0
	done
	return 1
}

# The counters' packets since the last call: "RELATED-TCP RELATED-UDP".
counters() {
	local out n c res=
	out=$(nft reset counters table inet cth61)
	for c in rel_tcp rel_udp; do
		n=${out#*counter "$c"*packets }
		res+="${n%% *} "
	done
	echo "${res% }"
}

queues_bound() {
	local q rest out=
	while read -r q rest; do
		out+="$q "
	done < /proc/net/netfilter/nfnetlink_queue
	printf '%s\n' $out | sort -n | tr '\n' ' ' | sed 's/ $//'
}

start_servers() {
	ip netns exec "$SRV" timeout 880 rpcbind -f -i > "$WORK/rpcbind.log" 2>&1 &
	RPCBIND_PID=$!
	timeout 880 ip netns exec "$SRV" "$PY" "$PROTOS" servers \
		--addr "$SRV_ADDR" --addr6 "$SRV_ADDR6" --dev s0 \
		--root "$WORK/root" --ready "$WORK/servers.ready" \
		> "$WORK/servers.log" 2>&1 &
	SRVS_PID=$!
	timeout 880 "$PY" "$PROTOS" relay --in r0 --out r1 \
		--out-addr "$RTR_SRV_ADDR" > "$WORK/relay.log" 2>&1 &
	RELAY_PID=$!
	coproc AGENT { exec timeout 880 ip netns exec "$CLI" "$PY" "$PROTOS" agent 2>&1; }
}

servers_ready() {
	for _ in {1..600}; do
		[ -e "$WORK/servers.ready" ] &&
			[ "$(count_in "$WORK/relay.log" 'relay ready')" -gt 0 ] && return 0
		if ! kill -0 "$SRVS_PID" 2>/dev/null || ! kill -0 "$RELAY_PID" 2>/dev/null; then
			break
		fi
		snooze 0.2
	done
	{ tail -n 10 "$WORK/servers.log"; tail -n 10 "$WORK/relay.log"; tail -n 5 "$WORK/rpcbind.log"; } | t_diag
	return 1
}

# run_cases TIMEOUT [serial]: every case at once, or with serial (when they
# should succeed) the agent's cases one after the other; RESULT[case] is its
# line.  conntrackd hands each queued packet back with the helper data the
# kernel copied when the packet was queued (with either module), so once
# its verdicts lag by more than TCP's 1 s retransmission timeout, the
# verdict on a retransmitted packet can undo a newer state: in a slowed
# run (VM_SLOWDOWN=3, a kernel build beside it) sane6 got its NET_START
# reply through but no expectation, with one packet more than usual queued
# (9, not 8).  One flow at a time keeps conntrackd's backlog short.  At
# 6b9d2e9, slowed, sane4 failed so with the C module (10 queued, not 8):
# since then the client's and the server's routes have a minimum TCP
# retransmission timeout of 5 s (ROUTE_OPTS, netns_up), far above
# conntrackd's verdict lag and far below OK_TIMEOUT.  A SYN's first
# retransmission still comes after 1 s, but a SYN holds no helper state.
declare -A RESULT
run_cases() {
	local tmo=$1 serial=${2:-} line req pid_c
	local -a reqs
	local -A pid
	RESULT=()
	rm -f "$WORK/tftp.out"
	# rpcinfo cannot succeed through conntrackd's rpc helper (see
	# phase()): the short timeout in every phase.  SIGKILL: libtirpc
	# blocks every signal while it connects, so rpcinfo -t would sit out
	# all of TCP's SYN retries (over 2 minutes) before a SIGTERM.
	ip netns exec "$CLI" timeout -s KILL $((FAIL_TIMEOUT + 2)) rpcinfo -u "$SRV_ADDR" "$PROG" 1 \
		> "$WORK/rpcinfo-u4.out" 2>&1 &
	pid[u]=$!
	ip netns exec "$CLI" timeout -s KILL $((FAIL_TIMEOUT + 2)) rpcinfo -t "$SRV_ADDR" "$PROG" 1 \
		> "$WORK/rpcinfo-t4.out" 2>&1 &
	pid[t]=$!
	ip netns exec "$CLI" curl -sS --tftp-no-options --max-time "$tmo" \
		-o "$WORK/tftp.out" "tftp://[$SRV_ADDR6]/$FILE" > "$WORK/curl.err" 2>&1 &
	pid_c=$!
	# amanda's transfer cannot succeed through conntrackd's helper (see
	# amanda_port): at most 10 s, beside the first case.
	reqs=("amanda4 $((tmo < 10 ? tmo : 10)) $SRV_ADDR; rpc-udp4 $tmo $SRV_ADDR"
		"rpc-tcp4 $tmo $SRV_ADDR" "rpc-udp6 $tmo $SRV_ADDR6" "rpc-tcp6 $tmo $SRV_ADDR6"
		"ssdp4 $tmo $CLI_ADDR c0" "ssdp6 $tmo $CLI_ADDR6 c0"
		"mdns4 $tmo $CLI_ADDR c0" "mdns6 $tmo $CLI_ADDR6 c0"
		"slp4 $tmo $CLI_ADDR c0" "slp6 $tmo $CLI_ADDR6 c0"
		"dhcpv6 $tmo $CLI_ADDR6 c0"
		"sane4 $tmo $SRV_ADDR" "sane6 $tmo $SRV_ADDR6" "tns4 $tmo $SRV_ADDR")
	if [ -z "$serial" ]; then
		req=$(printf '%s; ' "${reqs[@]}")
		reqs=("${req%; }")
	fi
	for req in "${reqs[@]}"; do
		echo "$req" >&"${AGENT[1]}"
		while IFS= read -rt $((tmo + 60)) line <&"${AGENT[0]}"; do
			[ "$line" = END ] && break
			RESULT[$(kv "$line" case)]=$line
		done
	done
	echo "# agent's cases done at ${SECONDS}s"
	for c in u t; do
		if wait "${pid[$c]}" &&
		   [[ $(< "$WORK/rpcinfo-${c}4.out") == *"program $PROG version 1 ready and waiting"* ]]; then
			RESULT[rpcinfo-${c}4]="case=rpcinfo-${c}4 result=ok"
		else
			RESULT[rpcinfo-${c}4]="case=rpcinfo-${c}4 result=fail out=$(tr ' \n' '_|' < "$WORK/rpcinfo-${c}4.out")"
		fi
	done
	echo "# rpcinfo done at ${SECONDS}s"
	if wait "$pid_c" && [ -f "$WORK/tftp.out" ] &&
	   [ "$(< "$WORK/tftp.out")" = "$(< "$WORK/root/$FILE")" ]; then
		RESULT[tftp6]="case=tftp6 result=ok"
	else
		RESULT[tftp6]="case=tftp6 result=fail curl=$(tr ' \n' '_|' < "$WORK/curl.err")"
	fi
}

# The expectation event a case's helper must have caused (a glob), from
# what the case reported.
expect_glob() { # CASE
	local c=$1 line=${RESULT[$1]:-} port
	port=$(kv "$line" port)
	case $c in
	rpcinfo-u4) echo "*\[NEW\]*proto=17 src=$CLI_ADDR dst=$SRV_ADDR *dport=$RPC_UDP_PORT *master-src=$CLI_ADDR master-dst=$SRV_ADDR *dport=111 *helper=rpc*" ;;
	rpcinfo-t4) echo "*\[NEW\]*proto=6 src=$CLI_ADDR dst=$SRV_ADDR *dport=$RPC_TCP_PORT *master-src=$CLI_ADDR master-dst=$SRV_ADDR *dport=111 *helper=rpc*" ;;
	rpc-udp4) echo "*\[NEW\]*proto=17 src=$CLI_ADDR dst=$SRV_ADDR *dport=$RPC2_UDP_PORT *master-src=$CLI_ADDR master-dst=$SRV_ADDR sport=$(kv "$line" ctlport) dport=111 *helper=rpc*" ;;
	rpc-tcp4) echo "*\[NEW\]*proto=6 src=$CLI_ADDR dst=$SRV_ADDR *dport=$RPC2_TCP_PORT *master-src=$CLI_ADDR master-dst=$SRV_ADDR sport=$(kv "$line" ctlport) dport=111 *helper=rpc*" ;;
	rpc-udp6) echo "*\[NEW\]*proto=17 src=$CLI_ADDR6 dst=$SRV_ADDR6 *dport=$RPC2_UDP_PORT *master-src=$CLI_ADDR6 master-dst=$SRV_ADDR6 sport=$(kv "$line" ctlport) dport=111 *helper=rpc*" ;;
	rpc-tcp6) echo "*\[NEW\]*proto=6 src=$CLI_ADDR6 dst=$SRV_ADDR6 *dport=$RPC2_TCP_PORT *master-src=$CLI_ADDR6 master-dst=$SRV_ADDR6 sport=$(kv "$line" ctlport) dport=111 *helper=rpc*" ;;
	sane4) echo "*\[NEW\]*proto=6 src=$CLI_ADDR dst=$SRV_ADDR *dport=4105 *master-src=$CLI_ADDR master-dst=$SRV_ADDR *dport=6566 *helper=sane*" ;;
	sane6) echo "*\[NEW\]*proto=6 src=$CLI_ADDR6 dst=$SRV_ADDR6 *dport=4105 *master-src=$CLI_ADDR6 master-dst=$SRV_ADDR6 *dport=6566 *helper=sane*" ;;
	tns4) echo "*\[NEW\]*proto=6 src=$CLI_ADDR dst=$SRV_ADDR *dport=4106 *master-src=$CLI_ADDR master-dst=$SRV_ADDR *dport=1521 *helper=tns*" ;;
	amanda4) echo "*\[NEW\]*proto=6 src=$CLI_ADDR dst=$SRV_ADDR *master-src=$CLI_ADDR master-dst=$SRV_ADDR *dport=10080 *helper=amanda*" ;;
	tftp6) echo "*\[NEW\]*proto=17 src=$SRV_ADDR6 dst=$CLI_ADDR6 *master-src=$CLI_ADDR6 master-dst=$SRV_ADDR6 *dport=69 *helper=tftp*" ;;
	*4) echo "*\[NEW\]*proto=17 *dst=$CLI_ADDR *dport=${port:-x} *master-src=$CLI_ADDR *sport=${port:-x} *helper=${c%4}*" ;;
	dhcpv6) echo "*\[NEW\]*proto=17 *dst=$CLI_ADDR6 *dport=546 *master-src=$CLI_ADDR6 *sport=546 *helper=dhcpv6*" ;;
	*6) echo "*\[NEW\]*proto=17 *dst=$CLI_ADDR6 *dport=${port:-x} *master-src=$CLI_ADDR6 *sport=${port:-x} *helper=${c%6}*" ;;
	esac
}

queue_of() { # HELPER-OBJECT
	local h name family proto queue obj
	for h in "${HELPERS[@]}"; do
		read -r name family proto queue obj <<< "$h"
		[ "$obj" = "$1" ] && { echo "$queue"; return; }
	done
}

# phase M TAG EXPECT(ok|fail)
phase() {
	local m=$1 tag=$2 want=$3 tmo=$FAIL_TIMEOUT from c obj res exp cnt rel_tcp rel_udp
	local fails=$_t_fail q queued
	[ "$want" = ok ] && tmo=$OK_TIMEOUT
	from=$(events_count)
	counters > /dev/null
	run_cases "$tmo" "$([ "$want" = ok ] && echo serial)"
	snooze 0.3
	cnt=$(counters)
	read -r rel_tcp rel_udp <<< "$cnt"
	echo "# [$m] $tag: cases done at ${SECONDS}s"
	for c in "${CASES[@]}"; do
		read -r c obj <<< "$c"
		res=$(kv "${RESULT[$c]:-}" result)
		OUTCOME[$m:$tag:$c]=${res:-none}
		if events_since "$from" "$(expect_glob "$c")"; then
			exp=yes
		else
			exp=no
		fi
		OUTCOME[$m:$tag:$c-expectation]=$exp
		if [ "$c" = amanda4 ]; then
			amanda_port "$m" "$tag" "$from"
		fi
		if [ "$want" = ok ] && [[ $c == rpcinfo-* ]]; then
			# rpcinfo -u and -t ask rpcbind version 4 (RPCBPROC_GETADDR,
			# over UDP and TCP), which conntrackd's rpc helper does not
			# parse (portmapper version 2 GETPORT only): recorded and
			# compared, not asserted.
			echo "# [$m] $tag: $c (rpcbind v4 GETADDR, not parsed by conntrackd's rpc helper): ${RESULT[$c]:-no result}; expectation: $exp"
			t_eq "[$m] $tag: $c: no expectation (GETADDR is not GETPORT)" no "$exp"
		elif [ "$want" = ok ] && [ "$c" = amanda4 ]; then
			# conntrackd's amanda helper expects the wrong port (see
			# amanda_port): the outcome is recorded, compared, not asserted.
			echo "# [$m] $tag: $c: ${RESULT[$c]:-no result}; expected port: ${OUTCOME[$m:$tag:amanda4-expected-port]}"
			t_eq "[$m] $tag: $c: expectation of conntrackd's amanda helper" yes "$exp"
			q=$(queue_of "$obj")
			queued=$(queue_packets "$q")
			t_ok "[$m] $tag: $c: packets queued to conntrackd's queue $q ($queued)" \
				test "${queued:-0}" -ge 1
		elif [ "$want" = ok ]; then
			t_eq "[$m] $tag: $c succeeds" ok "${res:-none}"
			t_eq "[$m] $tag: $c: expectation of conntrackd's ${obj%[46]*} helper" yes "$exp"
			q=$(queue_of "$obj")
			queued=$(queue_packets "$q")
			t_ok "[$m] $tag: $c: packets queued to conntrackd's queue $q ($queued)" \
				test "${queued:-0}" -ge 1
		else
			t_eq "[$m] $tag: $c fails" fail "${res:-none}"
			t_eq "[$m] $tag: $c: no expectation" no "$exp"
		fi
		if [ "$_t_fail" -ne "$fails" ]; then
			printf '%s\n' "${RESULT[$c]:-no result}" | t_diag
			fails=$_t_fail
		fi
	done
	OUTCOME[$m:$tag:related]=$([ "${rel_tcp:-0}" -gt 0 ] && echo tcp)/$([ "${rel_udp:-0}" -gt 0 ] && echo udp)
	if [ "$want" = ok ]; then
		t_ok "[$m] $tag: RELATED TCP packets on the router ($rel_tcp)" test "${rel_tcp:-0}" -ge 3
		t_ok "[$m] $tag: RELATED UDP packets on the router ($rel_udp)" test "${rel_udp:-0}" -ge 3
	else
		t_eq "[$m] $tag: no RELATED packet (TCP UDP)" "0 0" "$rel_tcp $rel_udp"
	fi
	true
}

# conntrackd 1.4.7's amanda helper parses the DATA, MESG and INDEX ports
# of amandad's CONNECT reply and then sets the expected port to the
# control connection's source port (its amanda.c overwrites the parsed
# port with cthelper_get_port_src()), where the kernel's nf_conntrack_amanda
# expects the announced port.  Which port did the expectation name?
amanda_port() { # M TAG FROM
	local line=${RESULT[amanda4]:-} sport dport got=none
	sport=$(kv "$line" port)
	dport=$(kv "$line" dataport)
	if events_since "$3" "*\[NEW\]*proto=6 src=$CLI_ADDR dst=$SRV_ADDR *dport=${dport:-x} *dport=10080 *helper=amanda*"; then
		got=announced-data-port
	elif events_since "$3" "*\[NEW\]*proto=6 src=$CLI_ADDR dst=$SRV_ADDR *dport=${sport:-x} *dport=10080 *helper=amanda*"; then
		got=request-source-port
	fi
	OUTCOME[$1:$2:amanda4-expected-port]=$got
}

phase_diag() {
	{
		echo "-- helpers: $(helper_states)"
		echo "-- nfnetlink_queue:"; cat /proc/net/netfilter/nfnetlink_queue
		echo "-- expectation events:"; tail -n 20 "$WORK/events"
		echo "-- conntrackd:"; tail -n 8 "$WORK/conntrackd.out"
		echo "-- servers:"; tail -n 12 "$WORK/servers.log"
		echo "-- relay:"; tail -n 12 "$WORK/relay.log"
	} 2>&1 | t_diag
}

run_module() { # M
	local m=$1 h name family proto queue obj fails=$_t_fail ok=yes

	echo "# [$m] start at ${SECONDS}s"
	unload_all
	t_ok "[$m] no kernel conntrack helper module loaded" no_kernel_helpers
	if ! "load_$m"; then
		t_fail "[$m] load module"
		return
	fi
	for h in "${HELPERS[@]}"; do
		read -r name family proto queue obj <<< "$h"
		nfct helper add "$name" "$family" "$proto" > "$WORK/nfct.out" 2>&1 || {
			ok=no
			t_diag < "$WORK/nfct.out"
		}
	done
	t_eq "[$m] nfct helper add: ${#HELPERS[@]} helper stubs" yes "$ok"
	echo "# [$m] stubs added at ${SECONDS}s"
	t_eq "[$m] stubs: disabled, queue 0" "$(helper_states_want no disabled)" "$(helper_states)"
	t_ok "[$m] router ruleset, helpers attached by nft ct helper objects" router_ruleset
	[ "$m" = rust ] && t_ok "rpcbind, servers and the multicast relay ready" servers_ready
	echo "# [$m] ready at ${SECONDS}s"

	phase "$m" "a) stubs, no conntrackd" fail
	[ "$_t_fail" -eq "$fails" ] || phase_diag
	fails=$_t_fail

	if start_conntrackd; then
		t_pass "[$m] conntrackd starts"
	else
		t_fail "[$m] conntrackd starts"
	fi
	t_eq "[$m] conntrackd configured and enabled every helper" \
		"$(helper_states_want yes enabled)" "$(helper_states)"
	t_eq "[$m] conntrackd listens on every queue" "10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25" \
		"$(queues_bound)"
	phase "$m" "b) conntrackd" ok
	[ "$_t_fail" -eq "$fails" ] || phase_diag

	stop_conntrackd
	t_ok "[$m] still no kernel conntrack helper module loaded" no_kernel_helpers
	router_reset
	t_ok "[$m] helpers deleted" retry 30 nfct helper flush
	t_eq "[$m] helper table empty" "" "$(helper_states)"
	t_ok "[$m] unload" retry 20 "unload_$m"
}

mkdir -p "$WORK/root"
echo "nfnl-cthelper tftp over IPv6 $$" > "$WORK/root/$FILE"
write_conntrackd_conf
: > "$WORK/conntrackd.out"
: > "$WORK/relay.log"

if ! ROUTE_OPTS="rto_min 5s" netns_up; then
	t_fail "namespaces, veth, routes (router: $(ip netns identify $$))"
	t_done
fi
t_pass "namespaces, veth, routes"
t_eq "the client's and the server's routes to each other have rto_min 5s (run_cases)" \
	"rto_min lock 5s rto_min lock 5s rto_min lock 5s rto_min lock 5s" \
	"$(for ns in "$CLI" "$SRV"; do
		ip -n "$ns" -4 route show default
		ip -n "$ns" -6 route show default
	done | grep -o 'rto_min lock [0-9a-z]*' | paste -sd ' ')"
for tool in rpcbind rpcinfo; do
	command -v "$tool" > /dev/null || t_fail "$tool missing: Debian package rpcbind (scripts/setup)"
done
start_servers
timeout 880 stdbuf -oL conntrack -E expect > "$WORK/events" 2>&1 &
EV_PID=$!

run_module rust
run_module c

# What conntrackd 1.4.7's helpers cannot do with any module.
t_skip "tns over IPv6: conntrackd 1.4.7's tns helper reads the redirect's HOST= only as a dotted IPv4 address"
t_skip "amanda over IPv6: conntrackd 1.4.7's amanda helper reads an IPv4 header (ihl) and mangles IPv4 only"

while IFS= read -r key; do
	[ "${key%%:*}" = rust ] || continue
	k=${key#rust:}
	t_eq "rust and C agree: $k" "${OUTCOME[c:$k]:-missing}" "${OUTCOME[$key]}"
done < <(printf '%s\n' "${!OUTCOME[@]}" | sort)
echo "# done at ${SECONDS}s"
t_done
