/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What src/bindings_generated.rs is generated from (see Kbuild and
 * src/bindgen_parameters).
 */
#include <linux/capability.h>
#include <linux/errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nfnetlink_cthelper.h>
#include <linux/socket.h>
#include <linux/string.h>
#include <net/netlink.h>
#include <net/netfilter/nf_conntrack_expect.h>
#include <net/netfilter/nf_conntrack_helper.h>

#include "shims.h"

/* Function-like macros and sizes bindgen cannot evaluate. */
const unsigned int CTHELPER_CONST_HELP_DATA_LEN =
	sizeof_field(struct nf_conn_help, data);
