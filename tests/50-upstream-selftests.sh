#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The kernel tree's own netfilter selftests that touch conntrack helpers,
# queues and conntrack, run with nfnl_cthelper.ko loaded: one test point per
# selftest, its output as diagnostics.  Nothing of them is kept in this
# repository: they are copied from the source tree of the running kernel's
# build (KDIR/source, else /lib/modules/$(uname -r)/build/source) into a
# temporary directory, and their helper programs are compiled there.
#
# nft_queue.sh runs from tests/51-upstream-nft-queue.sh, a script of its
# own with a time budget of its own (see there).
#
# Environment:
#   UPSTREAM_SELFTESTS         names to run instead of the default list, each
#                              NAME or NAME:TIMEOUT-IN-SECONDS (600)
#   UPSTREAM_SELFTESTS_BUDGET  seconds the whole script may take (840; the
#                              guest runner kills a test script at 900)
#   KSFT_MACHINE_SLOW          passed on, default "yes" (nft_queue.sh then
#                              moves 25 MB instead of 200 MB)
. "$(dirname "$0")/lib.sh"

# name:timeout-in-seconds, cheapest and most robust first.
SELFTESTS=(
	nft_conntrack_helper.sh:360
	conntrack_tcp_unreplied.sh:240
	conntrack_icmp_related.sh:360
)
if [ -n "${UPSTREAM_SELFTESTS:-}" ]; then
	SELFTESTS=()
	for s in $UPSTREAM_SELFTESTS; do
		case $s in *:*) SELFTESTS+=("$s") ;; *) SELFTESTS+=("$s:600") ;; esac
	done
fi
BUDGET=${UPSTREAM_SELFTESTS_BUDGET:-840}
START=$SECONDS

# Tools each selftest runs (besides ip, nft, ss and coreutils), so that a
# missing one is a SKIP that names it rather than a confusing failure.
declare -A NEEDS=(
	[nft_conntrack_helper.sh]="socat conntrack"
	[nft_queue.sh]="socat ping"
	[conntrack_icmp_related.sh]="ping ping6"
	[conntrack_tcp_unreplied.sh]="socat conntrack ping"
)
declare -A PACKAGE=(
	[ip]=iproute2 [ss]=iproute2 [nft]=nftables [socat]=socat
	[conntrack]=conntrack [ping]=iputils-ping [ping6]=iputils-ping
	[sysctl]=procps [timeout]=coreutils
)

export KSFT_MACHINE_SLOW=${KSFT_MACHINE_SLOW:-yes}
WORK=
NS_BEFORE=

cleanup() {
	[ -n "$WORK" ] && rm -rf "$WORK"
	mod_loaded nf_conntrack_ftp && rmmod nf_conntrack_ftp 2>/dev/null
	unload_rust 2>/dev/null
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The kernel source tree the running kernel was built from.
find_ksrc() {
	local c
	for c in ${KDIR:+"$KDIR/source" "$KDIR"} \
		"/lib/modules/$(uname -r)/build/source" "/lib/modules/$(uname -r)/build"; do
		if [ -d "$c/tools/testing/selftests/net/netfilter" ]; then
			readlink -f "$c"
			return 0
		fi
	done
	return 1
}

# tools/testing/selftests/{net/lib.sh,net/netfilter,kselftest} into $WORK,
# in the layout the scripts' "source lib.sh" (then ../lib.sh) expects.
copy_selftests() {
	local st=$1/tools/testing/selftests
	mkdir -p "$WORK/net" &&
		cp -r "$st/net/netfilter" "$WORK/net/" &&
		cp "$st/net/lib.sh" "$WORK/net/" || return 1
	if [ -d "$st/kselftest" ]; then
		cp -r "$st/kselftest" "$WORK/" || return 1
	fi
	# Only what is compiled here may run as ./nf_queue or ./connect_close.
	rm -f "$WORK/net/netfilter/nf_queue" "$WORK/net/netfilter/connect_close"
}

# Compiles nf_queue and connect_close as the selftests' Makefile does.  Sets
# BUILD_SKIP (what is missing) or BUILD_ERR (the compiler's output).
BUILD_SKIP= BUILD_ERR= BUILT=
build_progs() {
	local d=$WORK/net/netfilter mnl_cflags mnl_libs cc1 out
	BUILT=1
	if ! command -v gcc > /dev/null; then
		BUILD_SKIP="gcc is not installed (packages gcc, libc6-dev)"
		return
	fi
	if command -v pkg-config > /dev/null && pkg-config --exists libmnl; then
		mnl_cflags=$(pkg-config --cflags libmnl)
		mnl_libs=$(pkg-config --libs libmnl)
	elif [ -f /usr/include/libmnl/libmnl.h ]; then
		mnl_cflags= mnl_libs=-lmnl
	else
		BUILD_SKIP="libmnl is not installed (packages libmnl-dev, pkg-config)"
		return
	fi
	cc1=$(gcc -print-prog-name=cc1)
	# Holding cc1 open keeps it in the guest's page cache between the two
	# compilations; the guest reads the host's files over 9p, slowly.
	# shellcheck disable=SC2086
	if ! out=$(cd "$d" && { [ ! -f "$cc1" ] || exec 9< "$cc1"; } &&
		gcc -O2 -Wall $mnl_cflags -o nf_queue nf_queue.c $mnl_libs 2>&1 &&
		gcc -O2 -Wall -o connect_close connect_close.c 2>&1); then
		BUILD_ERR=$out
	fi
}

missing_tools() {
	local t miss=()
	for t in ip nft ss sysctl timeout $1; do
		command -v "$t" > /dev/null || miss+=("$t (package ${PACKAGE[$t]:-?})")
	done
	[ ${#miss[@]} -eq 0 ] || { local IFS=,; echo "${miss[*]}"; }
}

# nft_queue.sh has fixed timing that assumes a fast machine: its nf_queue
# listeners exit after 5 s without a packet, its UDP race needs a second
# packet sent within the 1 s the first one is held in the queue, its UDP
# listeners live 10 s and its SCTP transfers must end within 60 s.  An
# emulated (TCG) guest on the debug kernel meets that only when its root
# file system is shared over virtio-fs (scripts/setup installs virtiofsd);
# over 9p an exec takes twice as long.  Prints the cost of the step the UDP
# race repeats, for a failure to be read against.
queue_guest_speed() {
	local ns=nfnl-speed-$$ t0 t1 i
	ip netns add "$ns" 2>/dev/null || return 0
	ip netns exec "$ns" socat -h > /dev/null 2>&1
	t0=$(now_ms)
	for i in 1 2 3; do ip netns exec "$ns" socat -h > /dev/null 2>&1; done
	t1=$(now_ms)
	ip netns delete "$ns"
	echo "'ip netns exec NS socat -h' takes $(((t1 - t0) / 3)) ms here;" \
		"root file system: $(findmnt -n -o FSTYPE /)"
}

# The subtests of nft_queue.sh whose verdict depends on the machine's speed
# alone (none of them uses a conntrack helper): an SCTP transfer fails when
# it outlasts its listener's `timeout 60`, and the UDP race when the second
# packet is sent after nf_queue released the first (held 1 s).  When only
# these fail, each is retried once, alone, with those times 10 times longer
# (nft_queue_slow.sh): the retry decides.  Any other subtest that fails, or
# one that never finished, fails nft_queue.sh at once.
NFT_QUEUE_TIMING_BOUND="test_sctp_forward test_sctp_output test_udp_ct_race"

# Makes the copy of nft_queue.sh run each of its top-level test_* calls
# through nfnl_subtest, which prints a line when a subtest starts and one
# with its result, and which, with NFNL_SUBTESTS set, skips the subtests not
# named there (the set-up between them still runs).  Writes the slow copy
# beside it.  Fails when the script does not look as expected.
instrument_nft_queue() {
	local f=$1/nft_queue.sh calls
	calls=$(grep -cE '^test_[a-z0-9_]+( |$)' "$f")
	[ "$calls" -ge 10 ] && grep -q '^ret=0$' "$f" || return 1
	sed -i -E -e 's/^(test_[a-z0-9_]+)( .*)?$/nfnl_subtest \1\2/' \
		-e '/^ret=0$/r /dev/stdin' "$f" <<'EOF_SUBTEST' || return 1
nfnl_subtest()
{
	case " ${NFNL_SUBTESTS:-$1} " in *" $1 "*) ;; *) return 0 ;; esac
	local ret_before=$ret t0=$SECONDS
	ret=0
	printf '\nnfnl-subtest: started: %s\n' "$*"
	"$@"
	printf '\nnfnl-subtest: ret=%s after %s s: %s\n' "$ret" "$((SECONDS - t0))" "$*"
	[ "$ret" != 0 ] || ret=$ret_before
}
EOF_SUBTEST
	sed -E -e 's/^(\s*timeout )60( ip netns exec "\$ns2" socat -u SCTP-LISTEN)/\1600\2/' \
		-e 's/^(\s*timeout )10( ip netns exec "\$ns[23]" socat UDP-LISTEN)/\1100\2/' \
		-e 's/(nf_queue -q 12 -d )1000 /\110000 /' \
		-e 's/^(\s*busywait )10000( output_files_written)/\1100000\2/' \
		"$f" > "$1/nft_queue_slow.sh" || return 1
	# All six fixed times were found.
	[ "$(diff "$f" "$1/nft_queue_slow.sh" | grep -c '^>')" -eq 6 ]
}

# The output FILE of the instrumented nft_queue.sh in DIR: the subtests that
# failed (upstream's ret set), one per line, and "unfinished: NAME" for each
# subtest of the script that has no result line (it never started, or the
# script exited or was killed in it).  A subtest may leave its last line
# unterminated, hence the markers' leading newline.
nft_queue_failed() {
	local dir=$1 out=$2 st
	sed -n 's/^nfnl-subtest: ret=[1-9][0-9]* after [0-9]* s: //p' "$out"
	sed -n 's/^nfnl_subtest //p' "$dir/nft_queue.sh" | while IFS= read -r st; do
		sed -n 's/^nfnl-subtest: ret=[0-9]* after [0-9]* s: //p' "$out" | grep -qxF -- "$st" ||
			echo "unfinished: $st"
	done
}

# Retries the timing-bound subtests that failed in OUT, each alone in
# nft_queue_slow.sh; returns 0 when every one of them passed there.  Any
# other failure returns 1 without retrying.  The retries' output goes to OUT.
retry_nft_queue() {
	local dir=$1 out=$2 failed st fn left rc=0 rout
	failed=$(nft_queue_failed "$dir" "$out")
	[ -n "$failed" ] || return 1
	while read -r st; do
		fn=${st%% *}
		[[ " $NFT_QUEUE_TIMING_BOUND " == *" $fn "* ]] || return 1
	done <<< "$failed"
	while read -r st; do
		left=$((BUDGET - (SECONDS - START) - 30))
		if [ "$left" -lt 60 ]; then
			echo "nfnl: no time left to retry $st" >> "$out"
			return 1
		fi
		echo "nfnl: retry of $st alone, with its fixed times 10 times longer" >> "$out"
		rout=$(mktemp "$WORK/retry.XXXXXX")
		(cd "$dir" && NFNL_SUBTESTS=$st exec timeout -k 10 "$left" bash ./nft_queue_slow.sh) \
			< /dev/null > "$rout" 2>&1 || rc=1
		reap_netns
		cat "$rout" >> "$out"
		grep -qx "nfnl-subtest: ret=0 after [0-9]* s: $st" "$rout" || rc=1
	done <<< "$failed"
	return $rc
}

# test_icmp_vrf in nft_queue.sh runs `ip vrf exec`, which needs BPF cgroup
# support; without it that subtest fails.  Prints why when it cannot work.
vrf_exec_problem() {
	local ns=nfnl-vrf-$$ out
	ip netns add "$ns" 2>/dev/null || return 0
	if ! ip -n "$ns" link add tvrf type vrf table 9876 2>/dev/null; then
		echo "no VRF device support (CONFIG_NET_VRF)"
	elif ! out=$(ip -n "$ns" link set tvrf up && ip netns exec "$ns" ip vrf exec tvrf true 2>&1); then
		echo "'ip vrf exec' fails ($(echo $out)): the kernel needs CONFIG_BPF_SYSCALL=y and CONFIG_CGROUP_BPF=y"
	fi
	ip netns delete "$ns"
}

# Network namespaces a selftest left behind (after a timeout, say): kill
# what runs in them and delete them, so the next selftest starts clean.
reap_netns() {
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		grep -qxF "$ns" <<< "$NS_BEFORE" && continue
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns delete "$ns" 2>/dev/null
	done
}

# show FILE [LINES]: the selftest's output as TAP diagnostics (at most
# LINES, 80, of its end).
show() {
	local n max=${2:-80}
	n=$(wc -l < "$1")
	[ "$n" -le "$max" ] || echo "($((n - max)) earlier lines left out)" | t_diag
	tail -n "$max" "$1" | t_diag
}

# nf_conntrack_ftp goes away only once nft has dropped its references, which
# it does from deferred work (netns teardown, object destruction).
unload_ftp() {
	local i
	for i in $(seq 60); do
		mod_loaded nf_conntrack_ftp || return 0
		rmmod nf_conntrack_ftp 2>/dev/null && return 0
		sleep 0.5
	done
	return 1
}

run_selftest() { # NAME TIMEOUT
	local name=$1 tmo=$2 dir=$WORK/net/netfilter out rc miss reason left t0 extra= vrf= speed= retried
	out=$(mktemp "$WORK/out.XXXXXX")

	if [ ! -f "$dir/$name" ]; then
		t_fail "$name # not in $KSRC/tools/testing/selftests/net/netfilter"
		return
	fi
	miss=$(missing_tools "${NEEDS[$name]:-}")
	if [ -n "$miss" ]; then
		t_skip "$name: missing tool: $miss"
		return
	fi
	if [ "$name" = nft_queue.sh ]; then
		# Its SCTP subtests need the kernel's SCTP, which the fast
		# flavour leaves out (scripts/fast.config, with VRF and BPF);
		# on any other kernel, no SCTP is a failure, not a SKIP.
		if [ ! -d /proc/sys/net/sctp ]; then
			if [[ $(uname -r) =~ -nfnl-cthelper-fast$ ]]; then
				t_skip "$name: the fast flavour of the kernel has no SCTP, VRF or BPF: run it on the debug flavour, as scripts/hardening-long does"
			else
				t_fail "$name # the kernel has no SCTP (CONFIG_IP_SCTP=y, tests/config)"
			fi
			return
		fi
		[ -n "$BUILT" ] || build_progs
		if [ -n "$BUILD_SKIP" ]; then
			t_skip "$name: cannot build nf_queue and connect_close: $BUILD_SKIP"
			return
		elif [ -n "$BUILD_ERR" ]; then
			t_fail "$name # building nf_queue and connect_close failed"
			printf '%s\n' "$BUILD_ERR" | tail -n 30 | t_diag
			return
		fi
		if [ ! -f "$dir/nft_queue_slow.sh" ] && ! instrument_nft_queue "$dir"; then
			t_fail "$name # its top-level test_* calls or fixed times are not where this script expects them"
			return
		fi
		vrf=$(vrf_exec_problem)
		speed=$(queue_guest_speed)
	fi
	left=$((BUDGET - (SECONDS - START) - 30))
	if [ "$left" -lt 60 ]; then
		t_skip "$name: not started, the ${BUDGET} s time budget is used up (slow guest)"
		return
	fi
	[ "$tmo" -le "$left" ] || tmo=$left
	if ! mod_loaded nfnl_cthelper; then
		t_fail "$name # nfnl_cthelper is no longer loaded"
		return
	fi
	# Its "ct helper" objects need the kernel's ftp helper, which the test
	# guest does not autoload (kernel.modprobe is /bin/true there).
	if [ "$name" = nft_conntrack_helper.sh ] && ! modprobe nf_conntrack_ftp 2> "$out"; then
		t_skip "$name: modprobe nf_conntrack_ftp failed (needs CONFIG_NF_CONNTRACK_FTP=m)"
		show "$out"
		return
	fi

	NS_BEFORE=$(ip netns list 2>/dev/null | awk '{print $1}')
	t0=$SECONDS
	(cd "$dir" && exec env -u NFNL_SUBTESTS timeout -k 10 "$tmo" bash "./$name") < /dev/null > "$out" 2>&1
	rc=$?
	reap_netns
	retried=
	# Upstream's verdict is the exit status, but a subtest that exits the
	# script does so with the wrapper's ret, which may be 0: every subtest
	# must also have its result line.
	if [ "$name" = nft_queue.sh ] && [ "$rc" = 0 ] && [ -n "$(nft_queue_failed "$dir" "$out")" ]; then
		rc=1
		echo "nfnl: exit status 0, but: $(nft_queue_failed "$dir" "$out" | paste -sd, -)" >> "$out"
	fi
	if [ "$name" = nft_queue.sh ] && [ "$rc" = 1 ]; then
		retried=$(nft_queue_failed "$dir" "$out" | paste -sd, -)
		if retry_nft_queue "$dir" "$out"; then
			rc=0
			retried="timing-bound subtests failed, then passed when retried with 10 times the time: $retried"
		else
			retried=
		fi
	fi

	if [ "$name" = nft_conntrack_helper.sh ] && ! unload_ftp; then
		extra="nf_conntrack_ftp could not be unloaded afterwards"
	fi
	if ! mod_loaded nfnl_cthelper; then
		extra="${extra:+$extra; }nfnl_cthelper was unloaded while it ran"
	fi

	case $rc in
	0)
		if [ -z "$extra" ]; then
			t_pass "$name"
			[ -z "$retried" ] || echo "$retried" | t_diag
		else
			t_fail "$name # $extra"
		fi
		;;
	4)
		reason=$(grep -m1 'SKIP' "$out")
		t_skip "$name: ${reason:-exit status 4 (kselftest skip)}"
		;;
	124 | 137)
		t_fail "$name # timed out after ${tmo} s${extra:+; $extra}"
		;;
	*)
		t_fail "$name # exit=$rc${extra:+; $extra}"
		;;
	esac
	show "$out" "$([ "$name" = nft_queue.sh ] && echo 400 || echo 80)"
	echo "($name took $((SECONDS - t0)) s)" | t_diag
	[ "$rc" = 0 ] || [ -z "$vrf" ] || echo "note: $vrf" | t_diag
	[ -z "$speed" ] || echo "guest speed: $speed" | t_diag
}

if ! KSRC=$(find_ksrc); then
	for s in "${SELFTESTS[@]}"; do
		t_skip "${s%%:*}: kernel source not found (no tools/testing/selftests under" \
			"${KDIR:+$KDIR/source, }/lib/modules/$(uname -r)/build/source)"
	done
	t_done
fi
echo "# selftests from $KSRC/tools/testing/selftests/net/netfilter"

WORK=$(mktemp -d /tmp/nfnl-upstream.XXXXXX)
if ! copy_selftests "$KSRC"; then
	t_fail "copy the selftests from $KSRC"
	t_done
fi

unload_all
mod_loaded nf_conntrack_ftp && rmmod nf_conntrack_ftp
if ! load_rust; then
	t_fail "insmod $NFNL_CTHELPER_KO"
	t_done
fi

for s in "${SELFTESTS[@]}"; do
	run_selftest "${s%%:*}" "${s##*:}"
done

t_ok "rmmod nfnl_cthelper after the selftests" rmmod nfnl_cthelper
echo "# took $((SECONDS - START)) s"
t_done
