#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Concurrent writers and readers of a user-space helper's shared state, for
# CONCURRENCY_SECONDS (default 10) per module in CONCURRENCY_MODULES: ours
# ("rust", the default) and the upstream C one ("c").  On the fast and
# debug kernels it checks the outcomes; on the KCSAN flavour
# (scripts/hardening-long, which runs "rust c") the same run is what KCSAN
# watches, and the C module's run shows the test's checks hold for
# upstream as well (about 110 s of TCG guest time, hence not in the
# default run).
#
# A client namespace keeps four TCP connections to a server namespace busy
# (tests/cthelper_race.py traffic, each replaced now and then); an nft ct
# helper object binds them to the user-space helper kc_tcp (priv_data_len
# 32, two expectation classes), which queues every packet to NFQUEUE 5 or 6.
#   (a) the conntracks' helper private data (help->data):
#       - an NFQUEUE listener answers every packet as conntrackd does, with
#         NFQA_CT { CTA_HELP { CTA_HELP_NAME, CTA_HELP_INFO } }: our
#         from_nlattr, with no lock, in the verdict path;
#       - ct-update rewrites it with ctnetlink IPCTNL_MSG_CT_NEW (CTA_HELP)
#         and reads it back with GETs;
#       - ct-read reads it in conntrack events and dumps; `conntrack -E`
#         and `conntrack -L` run too: to_nlattr, under RCU only;
#       every writer writes a self-checking pattern naming its conntrack,
#       and every read must be untorn and the conntrack's own;
#   (b) the helper itself: policy rewrites the policies (max_expected,
#       timeout), queue number and status with cthelper NEW, checking every
#       dump and GET; `nfct helper list` runs too; expect creates
#       expectations on the bound conntracks (ctnetlink EXP_NEW, as
#       `conntrack -I expect`), so the conntrack core reads the policies:
#       at most max(max_expected) per master and class, timeouts within.
# Then the deterministic end: the final policy, queue and status read back
# exactly; a final marker written by ctnetlink is read back by a dump and,
# after one more packet per connection, by the NFQUEUE listener; the final
# policy's max_expected evicts and its timeout applies; every byte the
# clients sent reached the server.
#
# Under KCSAN (/sys/module/kcsan present) the test samples more often while
# it runs (KCSAN_SKIP_WATCH, KCSAN_UDELAY_TASK, KCSAN_UDELAY_INTERRUPT:
# kcsan's module parameters, restored at exit) and marks
# its phases in the kernel log ("nfnl-cthelper-phase: ...") for
# tests/kcsan-reports.awk.
. "$(dirname "$0")/lib.sh"

DURATION=${CONCURRENCY_SECONDS:-10}
HAMMER=${CONCURRENCY_HAMMER_SECONDS:-$(((DURATION + 1) / 2))}
MODULES=${CONCURRENCY_MODULES:-rust}
HELPER=kc_tcp
PORT=2400
Q1=5
Q2=6
CLI=cth-kcli-$$
SRV=cth-ksrv-$$
CLI_ADDR=192.0.2.1
SRV_ADDR=192.0.2.2
WORK=$(mktemp -d)
KCSAN_PARAMS=/sys/module/kcsan/parameters
pids=()
kcsan_saved=()

RACE=("$PY" -S -B "$TESTS_DIR/cthelper_race.py")
# Not a function: a function run with & is a subshell, whose $! is not the
# process that a kill must reach.
IN_SRV=(ip netns exec "$SRV")
in_srv() { "${IN_SRV[@]}" "$@"; }
phase() { echo "nfnl-cthelper-phase: 74-concurrency $*" > /dev/kmsg; }

stop_all() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
	pids=()
}

kcsan_restore() {
	local kv
	for kv in "${kcsan_saved[@]}"; do
		echo "${kv#*=}" > "$KCSAN_PARAMS/${kv%%=*}"
	done
	kcsan_saved=()
}

cleanup() {
	stop_all
	in_srv nft delete table ip cthelper_race 2> /dev/null
	kcsan_restore
	teardown "$CLI" "$SRV"
	rm -rf "$WORK"
}
trap cleanup EXIT

# More watchpoints, held longer, while the test runs: at the defaults
# (one access in 4000 watched for 80 us) a race on a few hot fields is
# seen too rarely in a run of minutes.
kcsan_tune() {
	local p v=
	[ -w "$KCSAN_PARAMS/skip_watch" ] || return 0
	for p in skip_watch udelay_task udelay_interrupt; do
		kcsan_saved+=("$p=$(cat "$KCSAN_PARAMS/$p")")
	done
	echo "${KCSAN_SKIP_WATCH:-400}" > "$KCSAN_PARAMS/skip_watch"
	echo "${KCSAN_UDELAY_TASK:-400}" > "$KCSAN_PARAMS/udelay_task"
	echo "${KCSAN_UDELAY_INTERRUPT:-100}" > "$KCSAN_PARAMS/udelay_interrupt"
	for p in skip_watch udelay_task udelay_interrupt; do v+="$p=$(cat "$KCSAN_PARAMS/$p") "; done
	echo "# KCSAN: $v(defaults: ${kcsan_saved[*]})"
}

# The KCSAN counters, "name=value ...".
kcsan_counters() {
	local name value out=
	[ -r /sys/kernel/debug/kcsan ] || return 0
	while read -r name value; do
		name=${name%:}
		case $name in data_races | races_unknown_origin | setup_watchpoints) out+="$name=$value " ;; esac
	done < /sys/kernel/debug/kcsan
	echo "$out"
}

# stat_of FILE KEY: the value of KEY=... on FILE's "stats" line, else 0.
stat_of() {
	local line
	line=$(grep '^stats ' "$1" 2> /dev/null | tail -n 1)
	line=" ${line#stats } "
	case $line in
	*" $2="*) line=${line#* "$2"=}; echo "${line%% *}" ;;
	*) echo 0 ;;
	esac
}

# stat_sum FILE PREFIX: the sum of the counters whose names start with PREFIX.
stat_sum() {
	local kv total=0
	for kv in $(grep '^stats ' "$1" 2> /dev/null | tail -n 1); do
		case $kv in "$2"*=*) total=$((total + ${kv#*=})) ;; esac
	done
	echo "$total"
}

nft_up() {
	in_srv nft -f - <<-EOF
		table ip cthelper_race {
			ct helper h { type "$HELPER" protocol tcp; l3proto ip; }
			chain pre {
				type filter hook prerouting priority filter; policy accept;
				tcp dport $PORT ct helper set "h"
			}
		}
	EOF
}

size_of() {
	local n
	n=$(wc -c < "$1" 2> /dev/null)
	echo "${n:-0}"
}

# rx_at_least BYTES: the server has written at least BYTES, read anew on
# every call (so that retry can wait for it).
rx_at_least() { [ "$(size_of "$WORK/rx")" -ge "$1" ]; }

# rx_quiet: the server's byte count once it has not moved for a second
# (at most 60 s).
rx_quiet() {
	local last=-1 now
	for _ in $(seq 60); do
		sleep 1
		now=$(size_of "$WORK/rx")
		[ "$now" = "$last" ] && break
		last=$now
	done
	echo "$now"
}

established() {
	[ "$(in_srv conntrack -L -p tcp --dport "$PORT" --state ESTABLISHED 2> /dev/null |
		grep -c "helper=$HELPER")" -ge "$1" ]
}

# role_ok M ROLE FILE EXIT_STATUS DESCRIPTION: the role's process has ended
# (its stats are in FILE) with EXIT_STATUS.
role_ok() {
	local rc=$4
	if [ "$rc" -eq 0 ]; then
		t_pass "[$1] $2: $5"
	else
		t_fail "[$1] $2: $5 (exit $rc)"
	fi
	sed "s/^/[$1] /" "$3" | t_diag
}

# hammer M ROLE1 DESCRIPTION1 COUNTER1 ROLE2 DESCRIPTION2 COUNTER2: two
# cthelper_race.py hammer roles side by side on the kept connection.
hammer() {
	local m=$1 p1 p2 rc1 rc2
	shift
	"${IN_SRV[@]}" "${RACE[@]}" "$1" --helper "$HELPER" --src "$CLI_ADDR" --dst "$SRV_ADDR" \
		--sport "$sport" --dport "$PORT" --seconds "$HAMMER" > "$WORK/$1" 2>&1 &
	p1=$!
	"${IN_SRV[@]}" "${RACE[@]}" "$4" --helper "$HELPER" --src "$CLI_ADDR" --dst "$SRV_ADDR" \
		--sport "$sport" --dport "$PORT" --seconds "$HAMMER" > "$WORK/$4" 2>&1 &
	p2=$!
	wait "$p1"
	rc1=$?
	wait "$p2"
	rc2=$?
	role_ok "$m" "$1" "$WORK/$1" "$rc1" "$2 ($(stat_of "$WORK/$1" "$3") in $HAMMER s)"
	role_ok "$m" "$4" "$WORK/$4" "$rc2" "$5 ($(stat_of "$WORK/$4" "$6") in $HAMMER s)"
	t_ok "[$m] $1 and $4 got work done" \
		test "$(stat_of "$WORK/$1" "$3")" -gt 0 -a "$(stat_of "$WORK/$4" "$6")" -gt 0
}

run_module() {
	local m=$1 sport=$2 lp tp srvp evp ev_lines sent rx s0 line id frc p
	local -a rc
	local written= seen= missing= final_failed=0 loops_ct=0 loops_exp=0 loops_nfct=0 bad_loops=0 before after
	local -a rp=()

	echo "# [$m] start at ${SECONDS}s"
	phase "[$m] setup"
	unload_all
	if ! "load_$m"; then
		t_fail "[$m] load module"
		return
	fi
	t_ok "[$m] helper $HELPER: priv_data_len 32, queue $Q1, enabled, classes c0 c1" \
		"${RACE[@]}" setup --helper "$HELPER" --queue "$Q1"
	t_ok "[$m] nft ct helper object binds tcp dport $PORT to it" nft_up
	in_srv conntrack -F > /dev/null 2>&1

	rm -f "$WORK/rx" "$WORK/ready"
	: > "$WORK/rx"
	"${IN_SRV[@]}" socat -u "TCP-LISTEN:$PORT,bind=$SRV_ADDR,reuseaddr,fork" \
		"OPEN:$WORK/rx,append" > /dev/null 2>&1 &
	srvp=$!
	pids+=("$srvp")
	"${IN_SRV[@]}" "${RACE[@]}" listen --helper "$HELPER" --queues "$Q1,$Q2" --ready "$WORK/ready" \
		> "$WORK/listen" 2>&1 &
	lp=$!
	pids+=("$lp")
	"${IN_SRV[@]}" stdbuf -oL conntrack -E -p tcp --dport "$PORT" > "$WORK/events" 2>&1 &
	evp=$!
	pids+=("$evp")
	if ! retry 240 test -e "$WORK/ready"; then
		t_fail "[$m] NFQUEUE listener bound queues $Q1 and $Q2"
		t_diag < "$WORK/listen"
		return
	fi
	t_pass "[$m] NFQUEUE listener bound queues $Q1 and $Q2 (NFQA_CFG_F_CONNTRACK)"
	ip netns exec "$CLI" "${RACE[@]}" traffic --sport "$sport" \
		--dst "$SRV_ADDR" --port "$PORT" --conns 4 > "$WORK/traffic" 2>&1 &
	tp=$!
	pids+=("$tp")
	t_ok "[$m] four client connections established, bound to $HELPER" retry 240 established 4

	phase "[$m] concurrency start"
	before=$(kcsan_counters)
	"${IN_SRV[@]}" "${RACE[@]}" ct-update --helper "$HELPER" --dport "$PORT" --seconds "$DURATION" \
		> "$WORK/ct-update" 2>&1 &
	rp+=($!)
	"${IN_SRV[@]}" "${RACE[@]}" ct-read --helper "$HELPER" --dport "$PORT" --seconds "$DURATION" \
		> "$WORK/ct-read" 2>&1 &
	rp+=($!)
	"${IN_SRV[@]}" "${RACE[@]}" policy --helper "$HELPER" --queues "$Q1,$Q2" --seconds "$DURATION" \
		> "$WORK/policy" 2>&1 &
	rp+=($!)
	"${IN_SRV[@]}" "${RACE[@]}" expect --helper "$HELPER" --dport "$PORT" --seconds "$DURATION" \
		> "$WORK/expect" 2>&1 &
	rp+=($!)
	# The command-line readers, until the Python roles are done.
	while kill -0 "${rp[0]}" 2> /dev/null || kill -0 "${rp[1]}" 2> /dev/null ||
		kill -0 "${rp[2]}" 2> /dev/null || kill -0 "${rp[3]}" 2> /dev/null; do
		if in_srv conntrack -L -p tcp --dport "$PORT" > "$WORK/ct-list" 2>&1 &&
			grep -q "helper=$HELPER" "$WORK/ct-list"; then
			loops_ct=$((loops_ct + 1))
		else
			bad_loops=$((bad_loops + 1)); t_diag < "$WORK/ct-list"
		fi
		if in_srv conntrack -L expect > /dev/null 2>&1; then
			loops_exp=$((loops_exp + 1))
		else
			bad_loops=$((bad_loops + 1))
		fi
		if nfct helper list > "$WORK/nfct-list" 2>&1 && grep -q "\.name = $HELPER," "$WORK/nfct-list"; then
			loops_nfct=$((loops_nfct + 1))
		else
			bad_loops=$((bad_loops + 1)); t_diag < "$WORK/nfct-list"
		fi
	done
	rc=()
	for p in "${rp[@]}"; do
		wait "$p"
		rc+=($?)
	done
	role_ok "$m" ct-update "$WORK/ct-update" "${rc[0]}" \
		"CT_NEW rewrote the private data ($(stat_of "$WORK/ct-update" update_0) times), every dump and GET read it whole"
	role_ok "$m" ct-read "$WORK/ct-read" "${rc[1]}" \
		"events ($(stat_sum "$WORK/ct-read" event_w)) and dumps ($(stat_of "$WORK/ct-read" dumps)) read it whole"
	role_ok "$m" policy "$WORK/policy" "${rc[2]}" \
		"policy/queue/status updates, every dumped and got value one that was written ($(stat_of "$WORK/policy" dumped) dumps)"
	role_ok "$m" expect "$WORK/expect" "${rc[3]}" \
		"expectations created ($(stat_of "$WORK/expect" create_0)), within max_expected and the policy timeouts"
	t_eq "[$m] conntrack -L ($loops_ct), conntrack -L expect ($loops_exp), nfct helper list ($loops_nfct) alongside: all answered" \
		0 "$bad_loops"
	t_ok "[$m] the verdicts' private data seen in dumps ($(($(stat_of "$WORK/ct-read" dump_w1) + $(stat_of "$WORK/ct-update" dump_w1))))" \
		test $(($(stat_of "$WORK/ct-read" dump_w1) + $(stat_of "$WORK/ct-update" dump_w1))) -gt 0

	# One conntrack, the kept connection's, as fast as it goes: its
	# private data written by CT_NEW and by the verdicts of its packets,
	# read by GETs; then policy updates racing with expectations created
	# on it, which make the conntrack core read the policy.
	phase "[$m] hammer help data"
	hammer "$m" hammer-write "updates of its private data" update_0 hammer-read "GETs, every one whole" get_0
	phase "[$m] hammer policy"
	hammer "$m" hammer-policy "policy updates" update_0 hammer-expect "expectations created on it" create_0
	after=$(kcsan_counters)
	[ -z "$after" ] || echo "# [$m] KCSAN counters before: $before after: $after"
	phase "[$m] concurrency end"

	# Deterministic end: no traffic, then one more line per connection.
	kill -USR1 "$tp"
	rx_quiet > /dev/null
	in_srv "${RACE[@]}" final --helper "$HELPER" --dport "$PORT" --queue "$Q1" > "$WORK/final" 2>&1
	frc=$?
	while IFS= read -r line; do
		case $line in
		"ok "*) t_pass "[$m] ${line#ok }" ;;
		"not ok "*) t_fail "[$m] ${line#not ok }"; final_failed=1 ;;
		final_written=*) written=${line#*=} ;;
		*) echo "# $line" ;;
		esac
	done < "$WORK/final"
	[ "$frc" -eq 0 ] || [ "$final_failed" = 1 ] || t_fail "[$m] the final checks ran (exit $frc)"
	# The baseline is taken after the final checks, just before the lines
	# are sent, and the size is read anew at every try (a "$(size_of ...)"
	# argument would be read once, and retry could never see the lines
	# arrive).  Each line is at least 7 bytes.
	s0=$(rx_quiet)
	kill -USR2 "$tp"
	t_ok "[$m] one more line per connection reached the server" \
		retry 240 rx_at_least $((s0 + 4 * 7))
	kill "$tp"
	wait "$tp"
	t_eq "[$m] client connections closed cleanly, no send failed" 0 $?
	sed "s/^/[$m] /" "$WORK/traffic" | t_diag
	sent=$(stat_of "$WORK/traffic" bytes)
	retry 120 rx_at_least "$sent"
	rx=$(size_of "$WORK/rx")
	t_eq "[$m] every byte sent ($sent) reached the server through the queue" "$sent" "$rx"

	kill "$lp"
	wait "$lp"
	role_ok "$m" listen "$WORK/listen" $? \
		"$(stat_of "$WORK/listen" packets) packets queued, $(stat_of "$WORK/listen" verdicts_with_ct) verdicts with CTA_HELP_INFO, every CTA_HELP_INFO queued whole"
	t_ok "[$m] the listener got its own verdicts' data back ($(stat_of "$WORK/listen" queued_w1) packets)" \
		test "$(stat_of "$WORK/listen" queued_w1)" -gt 0
	echo "# [$m] CTA_HELP_INFO written by ctnetlink seen in queued packets: $(stat_of "$WORK/listen" queued_w2)"
	seen=$(sed -n 's/^final_seen=//p' "$WORK/listen")
	missing=
	for id in ${written//,/ }; do
		case ",$seen," in *",$id,"*) ;; *) missing+="$id " ;; esac
	done
	t_ok "[$m] the final marker written by ctnetlink came back in the next queued packet of each connection (${written:-none})" \
		test -n "$written" -a -z "$missing"

	kill "$evp"
	wait "$evp" 2> /dev/null
	ev_lines=$(grep -c "helper=$HELPER" "$WORK/events")
	t_ok "[$m] conntrack -E saw events of the helper's conntracks ($ev_lines)" test "$ev_lines" -gt 0
	kill "$srvp" 2> /dev/null
	wait "$srvp" 2> /dev/null
	pids=()

	t_ok "[$m] delete the nft table" in_srv nft delete table ip cthelper_race
	t_ok "[$m] helpers flushed" retry 40 nfct helper flush
	t_ok "[$m] unload" retry 20 "unload_$m"
	phase "[$m] end"
}

unload_all
t_ok "two namespaces joined by veth" netns_pair "$CLI" "$CLI_ADDR" "$SRV" "$SRV_ADDR"
kcsan_tune
# The kept connection's source port, one per module (the previous one may
# linger in TIME_WAIT).
sport=40740
for m in $MODULES; do
	run_module "$m" "$sport"
	sport=$((sport + 1))
done
kcsan_restore
echo "# $(basename "$0"): $SECONDS s"
t_done
