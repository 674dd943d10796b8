#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Loading and unloading nfnl_cthelper.ko; the subsystem answers while loaded.
. "$(dirname "$0")/lib.sh"
unload_all

t_ok "insmod nfnl_cthelper.ko" insmod "$NFNL_CTHELPER_KO"
t_ok "module is live" test "$(cat /sys/module/nfnl_cthelper/initstate 2>/dev/null)" = live
t_ok "nfct helper list: empty table" bash -c '[ -z "$(nfct helper list)" ]'
t_err "upstream nfnetlink_cthelper cannot register the same subsystem" modprobe nfnetlink_cthelper
t_ok "nfct helper add ftp inet tcp" nfct helper add ftp inet tcp
t_ok "nfct helper list shows it" bash -c 'nfct helper list | grep -q "\.name = ftp,"'
t_ok "rmmod with a helper registered" rmmod nfnl_cthelper
t_err "nfct helper list fails once unloaded (no subsystem)" nfct helper list
t_ok "insmod again" insmod "$NFNL_CTHELPER_KO"
t_ok "table is empty after reload" bash -c '[ -z "$(nfct helper list)" ]'
t_ok "rmmod" rmmod nfnl_cthelper
t_done
