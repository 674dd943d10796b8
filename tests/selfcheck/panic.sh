#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Not a test of the module: a check of the test runner's failure output.
# It crashes the guest kernel mid-test (sysrq 'c'), as an oops in the module
# would.  Run it alone, it is not in the default list:
#
#   VM_TIMEOUT=400 scripts/run-tests tests/selfcheck/panic.sh
#
# scripts/run-tests must then fail and print that the guest did not come
# back while running this script, with the end of the guest's console (the
# "sysrq: Trigger a crash" line and the panic).
. "$(dirname "$0")/../lib.sh"
t_pass "about to crash the guest kernel"
sync
echo c > /proc/sysrq-trigger
t_fail "the guest kernel is still running after sysrq 'c'"
t_done
