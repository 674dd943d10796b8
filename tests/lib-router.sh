# SPDX-License-Identifier: GPL-2.0
# The client/router/server set-up of the conntrackd tests (tests/60, 61,
# 62), sourced after lib.sh by a script that runs in the router namespace
# $RTR and has set WORK (a temporary directory), CLI and SRV (the other
# namespaces' names).  Each test keeps what differs between them (rulesets,
# conntrackd's configuration and life cycle, servers) in its own file.
#
#   CLI c0 ---- r0 RTR r1 ---- s0 SRV
CLI_ADDR=192.0.2.1
RTR_CLI_ADDR=192.0.2.254
RTR_SRV_ADDR=198.51.100.254
SRV_ADDR=198.51.100.2
CLI_ADDR6=2001:db8:1::1
RTR_CLI_ADDR6=2001:db8:1::fe
RTR_SRV_ADDR6=2001:db8:2::fe
SRV_ADDR6=2001:db8:2::2

# Sleep without an exec: nobody ever writes to this fifo.
mkfifo "$WORK/never"
exec {NEVER_FD}<> "$WORK/never"
snooze() { read -rt "$1" -u "$NEVER_FD"; true; }

stop_pid() { # PID: TERM, then KILL after 5 s
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in {1..50}; do
		kill -0 "$pid" 2>/dev/null || break
		snooze 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	true
}

# The client and server namespaces and their links to the router, with
# forwarding on.  We are in the router namespace already.  One ip process
# per namespace.  ROUTE_OPTS, if set, is added to the client's and the
# server's default routes (the ones between them), e.g. "rto_min 5s".
netns_up() {
	[ "$(ip netns identify $$)" = "$RTR" ] &&
	ip netns add "$CLI" && ip netns add "$SRV" &&
	ip -batch - <<-EOF &&
		link add r0 type veth peer name c0 netns $CLI
		link add r1 type veth peer name s0 netns $SRV
		addr add $RTR_CLI_ADDR/24 dev r0
		addr add $RTR_SRV_ADDR/24 dev r1
		addr add $RTR_CLI_ADDR6/64 dev r0 nodad
		addr add $RTR_SRV_ADDR6/64 dev r1 nodad
		link set lo up
		link set r0 up
		link set r1 up
	EOF
	ip -n "$CLI" -batch - <<-EOF &&
		addr add $CLI_ADDR/24 dev c0
		addr add $CLI_ADDR6/64 dev c0 nodad
		link set lo up
		link set c0 up
		route add default via $RTR_CLI_ADDR ${ROUTE_OPTS:-}
		route add ::/0 via $RTR_CLI_ADDR6 ${ROUTE_OPTS:-}
	EOF
	ip -n "$SRV" -batch - <<-EOF &&
		addr add $SRV_ADDR/24 dev s0
		addr add $SRV_ADDR6/64 dev s0 nodad
		link set lo up
		link set s0 up
		route add default via $RTR_SRV_ADDR ${ROUTE_OPTS:-}
		route add ::/0 via $RTR_SRV_ADDR6 ${ROUTE_OPTS:-}
	EOF
	echo 1 > /proc/sys/net/ipv4/ip_forward &&
	echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
}

count_in() { # FILE STRING: how many times FILE contains STRING
	local text rest
	text=$(< "$1")
	rest=${text//"$2"/}
	echo $(((${#text} - ${#rest}) / ${#2}))
}

kv() { # LINE KEY: the value of KEY=value in LINE
	local rest=" $1"
	case $rest in
	*" $2="*) rest=${rest#* "$2"=}; echo "${rest%% *}" ;;
	esac
}

# ftp_progress LINE: how far an ftp-client session (cthelper_apps.py) got,
# from its output line: "RESULT ERROR last=VERB dataport=yes|no", ERROR
# the exception's type (empty when none), VERB the last command sent.
ftp_progress() {
	local line=$1 res err last port
	res=$(kv "$line" result)
	err=$(kv "$line" error)
	last=$(kv "$line" lastcmd)
	port=$(kv "$line" dataport)
	echo "${res:-none} ${err%%:*} last=${last:-none} dataport=$([ "${port:-0}" != 0 ] && echo yes || echo no)"
}

queue_packets() { # Q: the id of its last packet, 0 when it is not bound
	local q id rest
	while read -r q _ _ _ _ _ _ id rest; do
		[ "$q" = "$1" ] && { echo "$id"; return; }
	done < /proc/net/netfilter/nfnetlink_queue
	echo 0
}
