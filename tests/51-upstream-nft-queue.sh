#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The kernel tree's nft_queue.sh with nfnl_cthelper.ko loaded, run by
# 50-upstream-selftests.sh with a time budget of its own: on a slow guest
# one run of it takes most of the 900 s the guest runner gives a script by
# default, and its subtests whose verdict depends on the machine's speed
# alone are retried once with more time when they fail (see
# NFT_QUEUE_TIMING_BOUND there).  The budget is the limit below, which
# tests/run-guest reads, less 30 s.
#
# Long mode only (scripts/hardening-long): it takes 6 to 12 minutes on a
# TCG guest, more than the rest of the default run's helper tests
# together, and exercises NFQUEUE rather than a conntrack helper.
# nfnl-mode: long
# nfnl-timeout: 1800
limit=$(sed -n 's/^# nfnl-timeout: \([0-9][0-9]*\)$/\1/p' "$0")
UPSTREAM_SELFTESTS=nft_queue.sh:$((limit - 600)) \
	UPSTREAM_SELFTESTS_BUDGET=${NFT_QUEUE_BUDGET:-$((limit - 30))} \
	exec bash "$(dirname "$0")/50-upstream-selftests.sh"
