/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C shims for static inline functions and macros of the netfilter and
 * netlink headers, which Rust cannot call directly.  Each one is a thin
 * wrapper with the semantics of the function it names; see src/shims.c.
 */
#ifndef NFNL_CTHELPER_SHIMS_H
#define NFNL_CTHELPER_SHIMS_H

#include <linux/netlink.h>
#include <linux/skbuff.h>
#include <net/netlink.h>
#include <net/netfilter/nf_conntrack_helper.h>

/* Conntrack helper extension and the helper table. */
struct nf_conn_help *cthelper_shim_nfct_help(const struct nf_conn *ct);
struct nf_conntrack_helper *
cthelper_shim_help_helper_rcu(const struct nf_conn_help *help);
struct nf_conntrack_helper *cthelper_shim_nfct_helper_rcu(const struct nf_conn *ct);
bool cthelper_shim_help_data_read(const struct nf_conn *ct, u8 *data, size_t len);
bool cthelper_shim_help_data_write(struct nf_conn *ct, const u8 *data, size_t len);
bool cthelper_shim_helper_refcount_dec_if_one(struct nf_conntrack_helper *helper);
void cthelper_shim_expect_policy_set_limits(struct nf_conntrack_expect_policy *policy,
					    unsigned int max_expected,
					    unsigned int timeout);
struct nf_conntrack_expect_policy *cthelper_shim_expect_policy_alloc(unsigned int classes);
void cthelper_shim_expect_policy_free(struct nf_conntrack_expect_policy *policy);
struct nf_conntrack_helper *cthelper_shim_helper_hash_first_rcu(unsigned int bucket);
struct nf_conntrack_helper *
cthelper_shim_helper_hash_next_rcu(const struct nf_conntrack_helper *helper);
void cthelper_shim_rcu_read_lock(void);
void cthelper_shim_rcu_read_unlock(void);

/* Netlink attributes and messages. */
int cthelper_shim_nla_parse_nested(struct nlattr **tb, int maxtype,
				   const struct nlattr *nla,
				   const struct nla_policy *policy);
struct sk_buff *cthelper_shim_nlmsg_new(void);
void cthelper_shim_kfree_skb(struct sk_buff *skb);
unsigned int cthelper_shim_skb_len(const struct sk_buff *skb);
u32 cthelper_shim_skb_portid(const struct sk_buff *skb);
struct nlmsghdr *cthelper_shim_nfnl_msg_put(struct sk_buff *skb, u32 portid,
					    u32 seq, int type, int flags,
					    u8 family, u8 version, __be16 res_id);
void cthelper_shim_nlmsg_end(struct sk_buff *skb, struct nlmsghdr *nlh);
void cthelper_shim_nlmsg_cancel(struct sk_buff *skb, struct nlmsghdr *nlh);
struct nlattr *cthelper_shim_nla_nest_start(struct sk_buff *skb, int attrtype);
void cthelper_shim_nla_nest_end(struct sk_buff *skb, struct nlattr *start);
int cthelper_shim_netlink_dump_start(struct sock *ssk, struct sk_buff *skb,
				     const struct nlmsghdr *nlh,
				     int (*dump)(struct sk_buff *skb,
						 struct netlink_callback *cb));

#endif /* NFNL_CTHELPER_SHIMS_H */
