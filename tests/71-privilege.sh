#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Privilege checks, with our module and then with the upstream C one:
#   - uid/gid 65534 without capabilities (setpriv) is turned away by
#     nfnetlink itself (netlink_net_capable() in nfnetlink_rcv()): every
#     request, even one of an unknown message type, gets EPERM;
#   - root of a new user + network namespace (unshare -Urn) holds
#     CAP_NET_ADMIN over its own netns, so nfnetlink lets it through (an
#     unknown message type gets EINVAL from nfnetlink), and the EPERM for
#     NEW/GET/GET-dump/DEL comes from the subsystem's capable(CAP_NET_ADMIN)
#     checks, i.e. from the module under test;
# and the helper table is unchanged afterwards (dump before/after).
. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
chmod 755 "$work"
cp "$TESTS_DIR/cthelper_nl.py" "$TESTS_DIR/cthelper_priv.py" "$work/"
chmod 644 "$work"/*.py
trap 'rm -rf "$work"; unload_all' EXIT

priv() { "$PY" -S -B "$work/cthelper_priv.py" "$@"; }

expect_lines() { # WHAT-list errno
	local e=$1 w
	shift
	for w in "$@"; do printf '%s %s\n' "$w" "$e"; done
}

mod_requests=(NEW-create NEW-update GET GET-dump DEL DEL-flush)

for m in rust c; do
	unload_all
	if ! "load_$m"; then
		t_fail "[$m] load module"
		continue
	fi
	t_ok "[$m] root creates the helpers" priv setup
	before=$(priv table)
	t_eq "[$m] table has 3 helpers" 3 "$(printf '%s\n' "$before" | grep -c name)"

	out=$(setpriv --reuid 65534 --regid 65534 --clear-groups \
		--inh-caps=-all --bounding-set=-all "$PY" -S -B "$work/cthelper_priv.py" probe 2>&1)
	for w in "${mod_requests[@]}" unknown-type; do
		t_eq "[$m] uid 65534, no caps: $w -> EPERM (from nfnetlink)" \
			"$w EPERM" "$(grep "^$w " <<< "$out" || echo "$out" | tail -n 1)"
	done

	out=$(unshare -Urn "$PY" -S -B "$work/cthelper_priv.py" probe 2>&1)
	t_eq "[$m] unshare -Urn: unknown type -> EINVAL (nfnetlink let it through)" \
		"unknown-type EINVAL" "$(grep '^unknown-type ' <<< "$out" || echo "$out" | tail -n 1)"
	for w in "${mod_requests[@]}"; do
		t_eq "[$m] unshare -Urn: $w -> EPERM (from the cthelper module)" \
			"$w EPERM" "$(grep "^$w " <<< "$out" || echo "$out" | tail -n 1)"
	done

	t_eq "[$m] table unchanged after the unprivileged requests" "$before" "$(priv table)"
	t_ok "[$m] root flushes" priv flush
	t_eq "[$m] table empty" "" "$(priv table)"
	t_ok "[$m] unload" "unload_$m"
done
t_done
