#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Cases from the field (issue 12, part 2), each against our module and then
# the upstream C one, whose outcomes must agree:
#
#   cli 192.0.2.1 ---- 192.0.2.254 rtr 198.51.100.254 ---- 198.51.100.2 srv
#   2001:db8:1::1 ---- 2001:db8:1::fe     2001:db8:2::fe ---- 2001:db8:2::2
#
# The script runs inside the router namespace.  One Python agent there
# (tests/cthelper_field.py) creates and updates helpers, dumps the table,
# listens on NFQUEUE queues, opens TCP flows from the router to the
# server's FTP port and talks ctnetlink; tests/cthelper_apps.py serves FTP
# in the server namespace and runs FTP client sessions in the client's.
#
#   q) the queue path over IPv4 and IPv6 at once: helper "field" inet tcp
#      on queue 4 and inet6 tcp on queue 6, bound by nft ct helper objects
#      to flows from the router to port 21.  With a listener accepting
#      everything the packets of each family arrive on its own queue and
#      the conntracks are committed with helper=field; with no listener
#      (bypass) the flows still work, nothing is queued, and no conntrack
#      of the flow's direction is committed (the helper's verdict comes
#      from conntrack's confirm hook, see tests/60 e); disabled: nothing
#      queued, committed with helper=field; then enabled again and the
#      inet6 helper moved to queue 8 by an update while both flows go on:
#      IPv6 packets arrive on 8 and none on 6, IPv4 still on 4.
#   p) per-class policy updates, IPv4 and IPv6: a three-class helper
#      updated with distinct max_expected/timeout per class (class 0's
#      differ from the others', so that copying class 0's values into
#      every class, upstream's bug until 2026, shows) keeps each class's
#      own values in the dump, and expectations created through ctnetlink
#      on a helper-bound master show them: at each class's limit the
#      oldest of that class is evicted, and each timeout is its class's.
#   d) conntrackd (Debian's 1.4.7) starts and restarts: "Setup yes" on an
#      empty table creates the helper (queue, policy, enabled); a restart
#      with other QueueNum/ExpectMax/ExpectTimeout updates it in place,
#      while an nft ct helper object holds it; stopping conntrackd leaves
#      it enabled; without Setup and without a registered helper
#      conntrackd refuses to start; with a helper added by nfct first it
#      updates it.  The table is asserted after each step.
#   6) FTP over IPv6 through conntrackd: "nfct helper add ftp inet6 tcp",
#      an ip6 ct helper object in the router, which lets new connections
#      through only to port 21 and the rest only as RELATED/ESTABLISHED.
#      conntrackd 1.4.7's ftp helper creates no IPv6 expectation (see the
#      README and tests/60 g), so with conntrackd running passive (EPSV)
#      and active (EPRT) downloads fail, with the control connection
#      established, bound to helper ftp and queued to conntrackd; after
#      conntrackd stops, even the control connection cannot be
#      established.
#   k) kernel helpers beside user-space ones: with autoload off, an nft
#      ct helper "ftp" object cannot be created without a helper; with the
#      kernel's modprobe path restored, creating it autoloads
#      nf_conntrack_ftp (what users see: the object is created and uses
#      the kernel's helper); then "nfct helper add ftp inet tcp" (and
#      inet6) answers EBUSY, and beside a user-space "ftp inet udp" GET
#      finds nothing, DEL answers ENOENT and the dump shows only the
#      user-space helper; after nf_conntrack_ftp is unloaded the add
#      succeeds, loading nf_conntrack_ftp then fails with EBUSY, and a new
#      ct helper "ftp" object binds the user-space helper, loading nothing.
# Finally every outcome recorded with our module must equal the C one's.

RTR=cth62-rtr-$$
if [ "${1:-}" != --in-router ] && ip netns add "$RTR" 2>/dev/null; then
	exec ip netns exec "$RTR" bash "$0" --in-router "$RTR"
fi
[ "${1:-}" = --in-router ] && RTR=$2

. "$(dirname "$0")/lib.sh"

APPS="$TESTS_DIR/cthelper_apps.py"
FIELD="$TESTS_DIR/cthelper_field.py"
CLI=cth62-cli-$$
SRV=cth62-srv-$$
FTP6_QUEUE=7
# FTP transfers that must fail end on this (seconds): the SYN the router
# drops is never answered.
FAIL_TIMEOUT=5
WORK=$(mktemp -d /tmp/cth62.XXXXXX)
FILE=payload.bin
CTD_PID=
SRVS_PID=
FA_PID=
MODPROBE_SAVED=$(cat /proc/sys/kernel/modprobe)
declare -A OUTCOME

. "$TESTS_DIR/lib-router.sh"

stop_conntrackd() { stop_pid "$CTD_PID"; CTD_PID=; }

router_reset() {
	local t
	for t in "inet cth62q" "inet cth62p" "ip cth62d" "ip6 cth62v6" "ip cth62k"; do
		nft delete table $t 2>/dev/null
	done
	conntrack -F > /dev/null 2>&1
	true
}

cleanup() {
	echo "$MODPROBE_SAVED" > /proc/sys/kernel/modprobe
	if [ -n "${CTH62_DEBUG:-}" ]; then
		for f in conntrackd.out servers.log field.err; do
			echo "== $f"; cat "$WORK/$f"
		done 2>&1 | t_diag
	fi
	stop_conntrackd
	[ -n "$FA_PID" ] && kill -0 "$FA_PID" 2>/dev/null && fa quit
	stop_pid "$FA_PID"
	stop_pid "${AGENT_PID:-}"
	stop_pid "$SRVS_PID"
	router_reset
	teardown "$CLI" "$SRV" "$RTR"
	mod_loaded nf_conntrack_ftp && rmmod nf_conntrack_ftp 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------ the agents

# The field agent, through two FIFOs kept open as file descriptors.
fa_start() {
	mkfifo "$WORK/fa.in" "$WORK/fa.out" || return 1
	timeout 900 "$PY" "$FIELD" < "$WORK/fa.in" > "$WORK/fa.out" 2> "$WORK/field.err" &
	FA_PID=$!
	exec {FA_IN}> "$WORK/fa.in" {FA_OUT}< "$WORK/fa.out"
	fa_read
	[ "$FA" = ready ] || { t_diag < "$WORK/field.err"; return 1; }
}

fa_read() {
	FA=
	read -r -t 120 -u "$FA_OUT" FA || FA="no reply from the agent"
}

# fa CMD...: the reply in $FA.
fa() {
	if [ -z "$FA_PID" ] || ! kill -0 "$FA_PID" 2>/dev/null; then
		FA="agent not running"
		return
	fi
	printf '%s\n' "$*" >&"$FA_IN"
	fa_read
}

# t_fa M KEY DESC EXPECTED CMD...: runs CMD, records its reply as the
# outcome KEY and expects EXPECTED.
t_fa() {
	local m=$1 key=$2 desc=$3 want=$4
	shift 4
	fa "$@"
	OUTCOME[$m:$key]=$FA
	t_eq "[$m] $desc" "$want" "$FA"
}

# check M KEY DESC EXPECTED ACTUAL: records ACTUAL as outcome KEY.
check() {
	OUTCOME[$1:$2]=$5
	t_eq "[$1] $3" "$4" "$5"
}

start_servers() {
	timeout 880 ip netns exec "$SRV" "$PY" -I "$APPS" servers \
		--addr "$SRV_ADDR" --addr6 "$SRV_ADDR6" \
		--root "$WORK/root" --ready "$WORK/servers.ready" \
		> "$WORK/servers.log" 2>&1 &
	SRVS_PID=$!
}

servers_ready() {
	for _ in {1..600}; do
		[ -e "$WORK/servers.ready" ] && return 0
		kill -0 "$SRVS_PID" 2>/dev/null || break
		snooze 0.2
	done
	tail -n 20 "$WORK/servers.log" | t_diag
	return 1
}

start_agent() {
	coproc AGENT { exec timeout 880 ip netns exec "$CLI" "$PY" -I "$APPS" ftp-agent 2>&1; }
}

declare -A CLIENT
ftp_request() {
	local line
	CLIENT=()
	echo "$*" >&"${AGENT[1]}"
	while IFS= read -rt 120 line <&"${AGENT[0]}"; do
		[ "$line" = END ] && break
		CLIENT[${line%% *}]=$line
	done
}

# "4:v4 6:v6" from "4:v4=12 6:v6=10": which queues saw which family.
qkeys() {
	local w out=
	for w in $1; do out+="${w%%=*} "; done
	echo "${out% }"
}

# ------------------------------------------------------------ q) queues

queue_case() {
	local m=$1 s res
	t_fa "$m" q:new4 "q) helper field inet tcp, queue 4, enabled" ok \
		new field inet tcp queue=4 status=1 priv=0 pol=field:1:30
	t_fa "$m" q:new6 "q) helper field inet6 tcp, queue 6, enabled" ok \
		new field inet6 tcp queue=6 status=1 priv=0 pol=field:1:30
	t_ok "[$m] q) nft ct helper objects (ip, ip6) bind flows to port 21 on output" \
		nft -f - <<-EOF
		table inet cth62q {
			ct helper f4 {
				type "field" protocol tcp
				l3proto ip
			}
			ct helper f6 {
				type "field" protocol tcp
				l3proto ip6
			}
			chain out {
				type filter hook output priority filter; policy accept;
				meta nfproto ipv4 tcp dport 21 ct helper set "f4"
				meta nfproto ipv6 tcp dport 21 ct helper set "f6"
			}
		}
	EOF
	t_fa "$m" q:bind "q) listener binds queues 4, 6 and 8" ok bind 4 6 8

	# phase: phase name, expected queue keys, expected ct of each flow
	q_phase "$m" "listener" "4:v4 6:v6" "v4 helper=field" "v6 helper=field"
	t_fa "$m" q:unbind "q) listener gone (queues unbound)" ok unbind 4 6 8
	q_phase "$m" "bypass" "none" "none" "none"
	t_fa "$m" q:dis4 "q) disable inet helper" ok new field inet tcp status=0
	t_fa "$m" q:dis6 "q) disable inet6 helper" ok new field inet6 tcp status=0
	t_fa "$m" q:rebind "q) listener back on 4, 6 and 8" ok bind 4 6 8
	q_phase "$m" "disabled" "none" "v4 helper=field" "v6 helper=field"
	t_fa "$m" q:en4 "q) enable inet helper" ok new field inet tcp status=1
	t_fa "$m" q:en6 "q) enable inet6 helper" ok new field inet6 tcp status=1
	q_phase "$m" "moved" "4:v4 6:v6" "v4 helper=field" "v6 helper=field" keep
	# A late ACK of the last round trip (delayed ACKs wait up to 200 ms)
	# must not count as queued after the move.
	snooze 0.5
	fa qstats
	t_fa "$m" q:move "q) update: inet6 helper to queue 8 while the flows go on" ok \
		new field inet6 tcp queue=8
	t_fa "$m" q:table "q) table after the update" \
		"field/10/6:q=8:s=1:priv=0:pol=field/1/30 field/2/6:q=4:s=1:priv=0:pol=field/1/30" table
	q_ping "$m" "after move"
	fa qstats
	res=$FA
	check "$m" q:after-move:queues "q) after the move: IPv4 still on queue 4, IPv6 on 8, none on 6 ($res)" \
		"4:v4 8:v6" "$(qkeys "$res")"
	for s in 4 6; do
		fa ct "${QSPORT[$s]}"
		check "$m" "q:after-move:ct$s" "q) after the move: IPv$s conntrack still has helper=field" \
			"v$s helper=field" "$FA"
		fa close "moved$s"
	done
	t_fa "$m" q:unbind2 "q) listener unbinds" ok unbind 4 6 8
	nft delete table inet cth62q
	conntrack -F > /dev/null 2>&1
	t_ok "[$m] q) helpers deleted" retry 30 nfct helper flush
}

declare -A QSPORT
# q_phase M NAME WANT_QUEUES WANT_CT4 WANT_CT6 [keep]: a flow per family,
# a NOOP on each, the queues they reached and their conntracks.
q_phase() {
	local m=$1 name=$2 wantq=$3 want4=$4 want6=$5 keep=${6:-} v addr res
	fa qstats
	for v in 4 6; do
		addr=$SRV_ADDR
		[ $v = 6 ] && addr=$SRV_ADDR6
		fa open "$name$v" "$addr" 21
		res=$FA
		QSPORT[$v]=$(kv "$FA" sport)
		if [[ $res == "ok sport="* ]]; then
			fa ping "$name$v"
			res=$FA
		fi
		check "$m" "q:$name:flow$v" "q) $name: IPv$v flow to the server's port 21 (banner, NOOP)" ok "$res"
	done
	snooze 0.3
	fa qstats
	res=$FA
	check "$m" "q:$name:queues" "q) $name: queues reached, by family ($res)" "$wantq" "$(qkeys "$res")"
	for v in 4 6; do
		fa ct "${QSPORT[$v]:-0}"
		res=$FA
		if [ "$want4" = none ] && [ "$res" != none ]; then
			# the reply direction's own conntrack may exist, without helper
			[[ $res == *helper=field* ]] || res=none
		fi
		if [ $v = 4 ]; then
			check "$m" "q:$name:ct$v" "q) $name: IPv4 conntrack committed: $want4" "$want4" "$res"
		else
			check "$m" "q:$name:ct$v" "q) $name: IPv6 conntrack committed: $want6" "$want6" "$res"
		fi
		[ -n "$keep" ] || fa close "$name$v"
	done
}

q_ping() { # M TAG
	local v
	for v in 4 6; do
		fa ping "moved$v"
		check "$1" "q:$2:ping$v" "q) $2: IPv$v flow goes on" ok "$FA"
	done
	snooze 0.3
}

# ------------------------------------------------------------ p) policies

policy_case() {
	local m=$1 v l3 fam addr sport c i res want got ok e cls port tmo
	for v in 4 6; do
		l3=inet fam=2 addr=$SRV_ADDR
		[ $v = 6 ] && l3=inet6 fam=10 addr=$SRV_ADDR6
		t_fa "$m" "p$v:create" "p) IPv$v: three-class helper three $l3 tcp, every class 1/10" ok \
			new three $l3 tcp priv=0 pol=a:1:10,b:1:10,c:1:10
		t_fa "$m" "p$v:update" "p) IPv$v: update with distinct values per class" ok \
			new three $l3 tcp pol=a:3:300,b:1:100,c:2:200
		fa table
		res=
		for e in $FA; do [[ $e == three/$fam/* ]] && res=$e; done
		check "$m" "p$v:table" "p) IPv$v: dump: each class keeps its own values" \
			"three/$fam/6:q=0:s=0:priv=0:pol=a/3/300+b/1/100+c/2/200" "$res"
	done
	t_ok "[$m] p) nft ct helper objects (ip, ip6) bind flows to port 21 to them" nft -f - <<-EOF
		table inet cth62p {
			ct helper t4 {
				type "three" protocol tcp
				l3proto ip
			}
			ct helper t6 {
				type "three" protocol tcp
				l3proto ip6
			}
			chain out {
				type filter hook output priority filter; policy accept;
				meta nfproto ipv4 tcp dport 21 ct helper set "t4"
				meta nfproto ipv6 tcp dport 21 ct helper set "t6"
			}
		}
	EOF
	for v in 4 6; do
		addr=$SRV_ADDR
		[ $v = 6 ] && addr=$SRV_ADDR6
		fa open "master$v" "$addr" 21
		sport=$(kv "$FA" sport)
		fa ct "${sport:-0}"
		check "$m" "p$v:master" "p) IPv$v master committed with helper=three" "v$v helper=three" "$FA"
		res=
		for c in 0 1 2; do
			for i in 0 1 2 3; do
				fa expect "${sport:-0}" $((20000 + c * 10 + i)) "$c"
				res+="$FA "
			done
		done
		check "$m" "p$v:created" "p) IPv$v: four expectations per class created through ctnetlink, oldest first" \
			"$(printf 'ok %.0s' {1..12})" "$res"
		fa expects "${sport:-0}"
		res=$FA
		got='' ok=yes
		for e in $res; do
			IFS=: read -r cls port tmo <<< "$e"
			got+="$cls:$port "
			case $cls in
			0) want=300 ;; 1) want=100 ;; 2) want=200 ;; *) want=0 ;;
			esac
			# created a moment ago: within a minute of the class's timeout
			{ [ "${tmo:-0}" -le "$want" ] && [ "${tmo:-0}" -gt $((want - 60)) ]; } || ok=no
		done
		check "$m" "p$v:left" "p) IPv$v: the oldest evicted at each class's limit: 3, 1 and 2 left ($res)" \
			"0:20001 0:20002 0:20003 1:20013 2:20022 2:20023 " "$got"
		check "$m" "p$v:timeouts" "p) IPv$v: each expectation's timeout is its class's (300, 100, 200 s)" yes "$ok"
		fa close "master$v"
	done
	nft delete table inet cth62p
	conntrack -F expect > /dev/null 2>&1
	true
}

# ------------------------------------------------------------ d) conntrackd

# write_conf FILE SETUP(yes|no|-) QUEUE MAX TIMEOUT FAMILY
write_conf() {
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
		[ "$2" = - ] || echo "	Setup $2"
		cat <<-EOF
				Type ftp $6 tcp {
					QueueNum $3
					QueueLen 1024
					Policy ftp {
						ExpectMax $4
						ExpectTimeout $5
					}
				}
			}
		EOF
	} > "$WORK/$1"
}

# start_conntrackd CONF: CTD_STATE "started" (CTD_PID runs) or "refused"
# (it exited; CTD_ERR: its last error line, the time stamp cut).
start_conntrackd() {
	local n e line
	rm -f "$WORK/conntrackd.lock" "$WORK/conntrackd.ctl"
	n=$(count_in "$WORK/conntrackd.out" 'initialization completed')
	e=$(count_in "$WORK/conntrackd.out" 'ERROR')
	timeout 800 /usr/sbin/conntrackd -C "$WORK/$1" >> "$WORK/conntrackd.out" 2>&1 &
	CTD_PID=$!
	CTD_STATE=timeout CTD_ERR=
	for _ in {1..300}; do
		if [ "$(count_in "$WORK/conntrackd.out" 'initialization completed')" -gt "$n" ]; then
			CTD_STATE=started
			return
		fi
		if ! kill -0 "$CTD_PID" 2>/dev/null; then
			wait "$CTD_PID" 2>/dev/null
			CTD_STATE=refused CTD_PID=
			while IFS= read -r line; do
				[[ $line == *"[ERROR] trying to configure"* ]] && CTD_ERR=${line#*\[ERROR\] }
			done < "$WORK/conntrackd.out"
			[ "$(count_in "$WORK/conntrackd.out" 'ERROR')" -gt "$e" ] || CTD_ERR="no error logged"
			return
		fi
		snooze 0.2
	done
}

queues_bound() {
	local q rest out=
	while read -r q rest; do
		out+="$q "
	done < /proc/net/netfilter/nfnetlink_queue
	echo "${out% }"
}

ctd_result() { echo "$CTD_STATE${CTD_ERR:+ $CTD_ERR}"; }

conntrackd_case() {
	local m=$1
	t_fa "$m" d:empty "d) helper table empty" empty table

	start_conntrackd setup-q5.conf
	check "$m" d:setup "d) Setup yes, no helper registered: conntrackd starts" started "$(ctd_result)"
	t_fa "$m" d:setup-table "d) it created the helper: queue 5, enabled, priv_data_len 24, 2/60" \
		"ftp/2/6:q=5:s=1:priv=24:pol=ftp/2/60" table
	check "$m" d:setup-queue "d) conntrackd listens on queue 5" 5 "$(queues_bound)"
	t_ok "[$m] d) an nft ct helper object holds the helper" nft -f - <<-EOF
		table ip cth62d {
			ct helper ftp_user {
				type "ftp" protocol tcp
			}
		}
	EOF

	stop_conntrackd
	start_conntrackd setup-q9.conf
	check "$m" d:setup-restart "d) restart with Setup yes, QueueNum 9, ExpectMax 3, ExpectTimeout 120" \
		started "$(ctd_result)"
	t_fa "$m" d:setup-restart-table "d) the helper updated in place (the object still holds it): queue 9, 3/120" \
		"ftp/2/6:q=9:s=1:priv=24:pol=ftp/3/120" table
	check "$m" d:setup-restart-queue "d) conntrackd listens on queue 9" 9 "$(queues_bound)"
	stop_conntrackd
	t_fa "$m" d:setup-stopped-table "d) conntrackd stopped: the helper stays, enabled" \
		"ftp/2/6:q=9:s=1:priv=24:pol=ftp/3/120" table
	check "$m" d:setup-stopped-queue "d) no queue bound" "" "$(queues_bound)"

	nft delete table ip cth62d
	t_ok "[$m] d) helper deleted" retry 30 nfct helper delete ftp inet tcp
	t_fa "$m" d:empty2 "d) helper table empty again" empty table
	start_conntrackd plain-q5.conf
	check "$m" d:plain-empty "d) no Setup, no helper registered: conntrackd refuses to start" \
		"refused trying to configure cthelper \`ftp': Invalid argument" "$(ctd_result)"
	stop_conntrackd
	t_fa "$m" d:plain-empty-table "d) ... and the table stays empty" empty table

	t_ok "[$m] d) nfct helper add ftp inet tcp" nfct helper add ftp inet tcp
	t_fa "$m" d:stub "d) the stub: queue 0, disabled, priv_data_len 24, nfct's policy 1/300" \
		"ftp/2/6:q=0:s=0:priv=24:pol=ftp/1/300" table
	start_conntrackd plain-q5.conf
	check "$m" d:plain "d) no Setup, helper added by nfct: conntrackd starts" started "$(ctd_result)"
	t_fa "$m" d:plain-table "d) it updated the helper: queue 5, enabled, 2/60" \
		"ftp/2/6:q=5:s=1:priv=24:pol=ftp/2/60" table
	check "$m" d:plain-queue "d) conntrackd listens on queue 5" 5 "$(queues_bound)"
	stop_conntrackd
	t_fa "$m" d:plain-stopped-table "d) conntrackd stopped: the helper stays, enabled" \
		"ftp/2/6:q=5:s=1:priv=24:pol=ftp/2/60" table
	t_ok "[$m] d) helper deleted" retry 30 nfct helper delete ftp inet tcp
}

# ------------------------------------------------------------ 6) IPv6 FTP

router_ruleset6() {
	nft -f - <<-EOF
		table ip6 cth62v6 {
			ct helper ftp6_user {
				type "ftp" protocol tcp
				l3proto ip6
			}
			counter rel6 { }
			chain attach {
				type filter hook prerouting priority filter; policy accept;
				tcp dport 21 ct helper set "ftp6_user"
			}
			chain forward_filter {
				type filter hook forward priority filter; policy drop;
				ct state related meta l4proto tcp counter name "rel6" accept
				ct state established accept
				ct state new tcp dport 21 accept
			}
		}
	EOF
}

# ftp6_sessions M TAG: passive and active downloads over IPv6, side by
# side; records per mode "result error last=VERB dataport=yes|no
# control-state": VERB is the last command the client sent (EPSV or EPRT
# when the control connection worked and only the data connection
# failed), dataport whether the data port was known (for passive mode:
# EPSV's reply came back; the active client knows its own port before it
# sends EPRT), control-state "none" (not connected) or the control
# connection's conntrack (family, helper) and the expectations on it.
ftp6_sessions() {
	local m=$1 tag=$2 mode line ctl state
	ftp_request --server "$SRV_ADDR6" --file "$FILE" --expect "$WORK/root/$FILE" \
		--mode passive --mode active --timeout "$FAIL_TIMEOUT" --concurrent
	for mode in passive active; do
		line=${CLIENT[mode=$mode]:-}
		ctl=$(kv "$line" ctlport)
		state=none
		if [ "${ctl:-0}" != 0 ]; then
			fa ct "$ctl"
			state=$FA
			fa expects "$ctl"
			state+=" expectations=$FA"
		fi
		FTP6[$mode]="$(ftp_progress "$line") $state"
		echo "# [$m] 6) $tag: $line"
	done
}

declare -A FTP6
ipv6_ftp_case() {
	local m=$1 q
	t_ok "[$m] 6) nfct helper add ftp inet6 tcp" nfct helper add ftp inet6 tcp
	t_ok "[$m] 6) ip6 ruleset: ct helper object, new only to port 21" router_ruleset6
	start_conntrackd ftp6.conf
	check "$m" 6:start "6) conntrackd starts with its inet6 ftp helper" started "$CTD_STATE${CTD_ERR:+ $CTD_ERR}"
	t_fa "$m" 6:table "6) conntrackd configured it: queue $FTP6_QUEUE, enabled" \
		"ftp/10/6:q=$FTP6_QUEUE:s=1:priv=24:pol=ftp/1/300" table
	ftp6_sessions "$m" "conntrackd running"
	q=$(queue_packets "$FTP6_QUEUE")
	check "$m" 6:running:passive "6) conntrackd running: passive (EPSV) download fails (no IPv6 expectation: conntrackd's ftp helper), the control connection bound to helper ftp" \
		"fail TimeoutError last=EPSV dataport=yes v6 helper=ftp expectations=none" "${FTP6[passive]}"
	check "$m" 6:running:active "6) conntrackd running: active (EPRT) download fails the same way" \
		"fail TimeoutError last=EPRT dataport=yes v6 helper=ftp expectations=none" "${FTP6[active]}"
	OUTCOME[$m:6:running:queued]=$([ "${q:-0}" -ge 6 ] && echo yes)
	t_ok "[$m] 6) the control connections' packets were queued to conntrackd ($q)" \
		test "${q:-0}" -ge 6
	stop_conntrackd
	t_fa "$m" 6:stopped-table "6) conntrackd stopped: helper still enabled" \
		"ftp/10/6:q=$FTP6_QUEUE:s=1:priv=24:pol=ftp/1/300" table
	ftp6_sessions "$m" "conntrackd stopped"
	check "$m" 6:stopped:passive "6) conntrackd stopped: passive download fails, not even the control connection" \
		"fail TimeoutError last=none dataport=no none" "${FTP6[passive]}"
	check "$m" 6:stopped:active "6) conntrackd stopped: active download fails, not even the control connection" \
		"fail TimeoutError last=none dataport=no none" "${FTP6[active]}"
	nft delete table ip6 cth62v6
	conntrack -F > /dev/null 2>&1
	t_ok "[$m] 6) helper deleted" retry 30 nfct helper delete ftp inet6 tcp
}

# ------------------------------------------------------------ k) kernel

# nfct_said CMD...: "ok" when CMD succeeds, else what its first error
# line says after "error:" / "Error:" (nfct, nft).
nfct_said() {
	local out line
	if out=$("$@" 2>&1); then
		echo ok
		return
	fi
	while IFS= read -r line; do
		case $line in *rror:*) echo "${line##*rror: }"; return ;; esac
	done <<< "$out"
	echo "${out%%$'\n'*}"
}

# An nft ct helper "ftp" object (table ip cth62k).
kftp_object() {
	nft -f - <<-EOF
		table ip cth62k {
			ct helper kftp {
				type "ftp" protocol tcp
			}
		}
	EOF
}

kernel_case() {
	local m=$1 res
	check "$m" k:none "k) nf_conntrack_ftp not loaded" no "$(mod_loaded nf_conntrack_ftp && echo yes || echo no)"
	res=$(nfct_said kftp_object)
	check "$m" k:noautoload "k) autoload off, no helper: nft ct helper \"ftp\" cannot be created" \
		"Could not process rule: No such file or directory" "$res"
	echo /sbin/modprobe > /proc/sys/kernel/modprobe
	res=$(nfct_said kftp_object)
	echo "$MODPROBE_SAVED" > /proc/sys/kernel/modprobe
	check "$m" k:autoload "k) autoload on: nft ct helper \"ftp\" created" ok "$res"
	check "$m" k:loaded "k) ... and nf_conntrack_ftp was autoloaded" yes \
		"$(mod_loaded nf_conntrack_ftp && echo yes || echo no)"
	check "$m" k:add "k) nfct helper add ftp inet tcp: EBUSY" "Device or resource busy" \
		"$(nfct_said nfct helper add ftp inet tcp)"
	check "$m" k:add6 "k) nfct helper add ftp inet6 tcp: EBUSY" "Device or resource busy" \
		"$(nfct_said nfct helper add ftp inet6 tcp)"
	t_fa "$m" k:udp "k) a user-space helper ftp inet udp beside it (raw NEW)" ok \
		new ftp inet udp priv=0 pol=ftp:1:300
	check "$m" k:get "k) nfct helper get ftp inet tcp: no helper printed (upstream acks a GET with a tuple that matches nothing)" \
		"rc=0" "$(nfct helper get ftp inet tcp 2>&1; echo "rc=$?")"
	check "$m" k:del "k) nfct helper delete ftp inet tcp: ENOENT, the kernel's is not touched" \
		"No such file or directory" "$(nfct_said nfct helper delete ftp inet tcp)"
	t_fa "$m" k:dump "k) the dump shows only the user-space ftp inet udp" \
		"ftp/2/17:q=0:s=0:priv=0:pol=ftp/1/300" table
	t_ok "[$m] k) ftp inet udp deleted" nfct helper delete ftp inet udp
	check "$m" k:still "k) nf_conntrack_ftp still loaded" yes \
		"$(mod_loaded nf_conntrack_ftp && echo yes || echo no)"
	nft delete table ip cth62k
	t_ok "[$m] k) rmmod nf_conntrack_ftp" retry 30 rmmod nf_conntrack_ftp
	check "$m" k:add-after "k) then nfct helper add ftp inet tcp succeeds" ok \
		"$(nfct_said nfct helper add ftp inet tcp)"
	res=$(modprobe nf_conntrack_ftp 2>&1)
	res=${res##*: }
	check "$m" k:modprobe "k) modprobe nf_conntrack_ftp now fails: EBUSY" "Device or resource busy" "$res"
	check "$m" k:notloaded "k) nf_conntrack_ftp not loaded" no \
		"$(mod_loaded nf_conntrack_ftp && echo yes || echo no)"
	echo /sbin/modprobe > /proc/sys/kernel/modprobe
	res=$(nfct_said kftp_object)
	echo "$MODPROBE_SAVED" > /proc/sys/kernel/modprobe
	check "$m" k:user-object "k) autoload on: nft ct helper \"ftp\" now binds the user-space helper" ok "$res"
	check "$m" k:user-object-noload "k) ... and loads nothing" no \
		"$(mod_loaded nf_conntrack_ftp && echo yes || echo no)"
	check "$m" k:del-busy "k) nfct helper delete ftp inet tcp while the object holds it: EBUSY" \
		"Device or resource busy" "$(nfct_said nfct helper delete ftp inet tcp)"
	nft delete table ip cth62k
	t_ok "[$m] k) helper deleted" retry 30 nfct helper delete ftp inet tcp
}

# ------------------------------------------------------------ per module

run_module() { # M
	local m=$1
	echo "# [$m] start at ${SECONDS}s"
	unload_all
	if ! "load_$m"; then
		t_fail "[$m] load module"
		return
	fi
	queue_case "$m"
	echo "# [$m] q) done at ${SECONDS}s"
	policy_case "$m"
	echo "# [$m] p) done at ${SECONDS}s"
	router_reset
	t_ok "[$m] helpers of q) and p) deleted" retry 30 nfct helper flush
	conntrackd_case "$m"
	echo "# [$m] d) done at ${SECONDS}s"
	ipv6_ftp_case "$m"
	echo "# [$m] 6) done at ${SECONDS}s"
	kernel_case "$m"
	echo "# [$m] k) done at ${SECONDS}s"
	router_reset
	t_ok "[$m] helper table empty at the end" retry 30 nfct helper flush
	t_fa "$m" end "helper table empty" empty table
	t_ok "[$m] unload" retry 20 "unload_$m"
}

mkdir -p "$WORK/root"
{
	echo "nfnl-cthelper field payload $$"
	head -c 3000 /dev/urandom | base64
} > "$WORK/root/$FILE"
write_conf setup-q5.conf yes 5 2 60 inet
write_conf plain-q5.conf - 5 2 60 inet
write_conf setup-q9.conf yes 9 3 120 inet
write_conf ftp6.conf - "$FTP6_QUEUE" 1 300 inet6
: > "$WORK/conntrackd.out"

if ! netns_up; then
	t_fail "namespaces, veth, routes (router: $(ip netns identify $$))"
	t_done
fi
t_pass "namespaces, veth, routes"
start_servers
start_agent
if ! fa_start; then
	t_fail "field agent starts"
	t_done
fi
t_ok "FTP servers listen in the server namespace" servers_ready
mod_loaded nf_conntrack_ftp && rmmod nf_conntrack_ftp

run_module rust
run_module c

while IFS= read -r key; do
	[ "${key%%:*}" = rust ] || continue
	k=${key#rust:}
	t_eq "rust and C agree: $k" "${OUTCOME[c:$k]-missing}" "${OUTCOME[$key]}"
done < <(printf '%s\n' "${!OUTCOME[@]}" | sort)
echo "# done at ${SECONDS}s"
t_done
