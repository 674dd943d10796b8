// SPDX-License-Identifier: GPL-2.0
/*
 * C shims for static inline functions and macros; see shims.h.
 *
 * Nothing here makes a decision: each function is the inline(s) it names,
 * with no logic of its own beyond NULL checks and locking, so that the Rust
 * abstractions (src/netlink.rs, src/nfnetlink.rs, src/conntrack.rs) can
 * reach them.
 */

#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/netfilter/nf_conntrack.h>
#include <net/netfilter/nf_conntrack_core.h>
#include <net/netfilter/nf_conntrack_helper.h>

#include "shims.h"

struct nf_conn_help *cthelper_shim_nfct_help(const struct nf_conn *ct)
{
	return nfct_help(ct);
}

struct nf_conntrack_helper *
cthelper_shim_help_helper_rcu(const struct nf_conn_help *help)
{
	return rcu_dereference(help->helper);
}

/*
 * Both of the above in one call, for the help() callback, which runs for
 * every packet of a helped connection: NULL without a helper extension or
 * without a helper.
 */
struct nf_conntrack_helper *cthelper_shim_nfct_helper_rcu(const struct nf_conn *ct)
{
	struct nf_conn_help *help = nfct_help(ct);

	return help ? rcu_dereference(help->helper) : NULL;
}

/*
 * The helper's private data area, copied whole.  C reads and writes it with
 * no common lock: ctnetlink (IPCTNL_MSG_CT_NEW, under its mutex) and nfqueue
 * verdicts carrying NFQA_CT (under RCU only) write it; ctnetlink dumps and
 * events, and the nfqueue and nflog glue that describes a queued or logged
 * packet's conntrack, read it.  So a reader there can see half an update.
 * Here both sides copy under the conntrack's own lock, which ctnetlink also
 * takes on these same paths (TCP protocol state, sequence adjustment); none
 * of them calls a helper callback with it held.
 *
 * A conntrack template (xt_CT's, attached to packets in the raw table) has
 * no initialised lock (nf_ct_tmpl_alloc() does not init it), and reaches
 * to_nlattr through the nfqueue and nflog glue (tests/40-packet-path.sh,
 * case e): its area is copied without a lock, as C does.  from_nlattr does
 * not see templates (ctnetlink finds no helper by a template's empty tuple);
 * the write side treats them alike all the same.  len must be
 * sizeof(help->data).
 */
bool cthelper_shim_help_data_read(const struct nf_conn *ct, u8 *data, size_t len)
{
	struct nf_conn_help *help = nfct_help(ct);
	/* const only for the to_nlattr callback's sake, as in ctnetlink. */
	struct nf_conn *lockct = (struct nf_conn *)ct;

	if (!help || WARN_ON_ONCE(len != sizeof(help->data)))
		return false;
	if (nf_ct_is_template(ct)) {
		memcpy(data, help->data, len);
		return true;
	}
	spin_lock_bh(&lockct->lock);
	memcpy(data, help->data, len);
	spin_unlock_bh(&lockct->lock);
	return true;
}

bool cthelper_shim_help_data_write(struct nf_conn *ct, const u8 *data, size_t len)
{
	struct nf_conn_help *help = nfct_help(ct);

	if (!help || WARN_ON_ONCE(len != sizeof(help->data)))
		return false;
	if (nf_ct_is_template(ct)) {
		memcpy(help->data, data, len);
		return true;
	}
	spin_lock_bh(&ct->lock);
	memcpy(help->data, data, len);
	spin_unlock_bh(&ct->lock);
	return true;
}

bool cthelper_shim_helper_refcount_dec_if_one(struct nf_conntrack_helper *helper)
{
	return refcount_dec_if_one(&helper->refcnt);
}

/*
 * The conntrack core reads a helper's expectation limits with plain loads
 * under nf_conntrack_expect_lock (__nf_ct_expect_check() and
 * evict_oldest_expect(), nf_ct_expect_insert()).  An update writes the limits under
 * that lock too, so that no such read races with it; dumps, which read under
 * RCU only, get each limit whole (READ_ONCE() there, WRITE_ONCE() here).
 * Upstream C writes them with no lock at all; KCSAN reports that race.
 */
void cthelper_shim_expect_policy_set_limits(struct nf_conntrack_expect_policy *policy,
					    unsigned int max_expected,
					    unsigned int timeout)
{
	spin_lock_bh(&nf_conntrack_expect_lock);
	WRITE_ONCE(policy->max_expected, max_expected);
	WRITE_ONCE(policy->timeout, timeout);
	spin_unlock_bh(&nf_conntrack_expect_lock);
}

/*
 * A helper's expectation policies, in an allocation of their own as in
 * nfnl_cthelper_parse_expect_policy(): kcalloc() of exactly the classes
 * used (the Rust side's helper allocation then fits kmalloc-192; see
 * Helper in conntrack.rs).  Zeroed.
 */
struct nf_conntrack_expect_policy *cthelper_shim_expect_policy_alloc(unsigned int classes)
{
	return kcalloc(classes, sizeof(struct nf_conntrack_expect_policy), GFP_KERNEL);
}

/* kfree(), as nfnl_cthelper_del() and nfnl_cthelper_exit() do after unregistering. */
void cthelper_shim_expect_policy_free(struct nf_conntrack_expect_policy *policy)
{
	kfree(policy);
}

static struct nf_conntrack_helper *helper_of(struct hlist_node *node)
{
	return node ? hlist_entry(node, struct nf_conntrack_helper, hnode) : NULL;
}

struct nf_conntrack_helper *cthelper_shim_helper_hash_first_rcu(unsigned int bucket)
{
	return helper_of(rcu_dereference(hlist_first_rcu(&nf_ct_helper_hash[bucket])));
}

struct nf_conntrack_helper *
cthelper_shim_helper_hash_next_rcu(const struct nf_conntrack_helper *helper)
{
	return helper_of(rcu_dereference(hlist_next_rcu(&helper->hnode)));
}

void cthelper_shim_rcu_read_lock(void)
{
	rcu_read_lock();
}

void cthelper_shim_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

int cthelper_shim_nla_parse_nested(struct nlattr **tb, int maxtype,
				   const struct nlattr *nla,
				   const struct nla_policy *policy)
{
	return nla_parse_nested_deprecated(tb, maxtype, nla, policy, NULL);
}

struct sk_buff *cthelper_shim_nlmsg_new(void)
{
	return nlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
}

void cthelper_shim_kfree_skb(struct sk_buff *skb)
{
	kfree_skb(skb);
}

unsigned int cthelper_shim_skb_len(const struct sk_buff *skb)
{
	return skb->len;
}

u32 cthelper_shim_skb_portid(const struct sk_buff *skb)
{
	return NETLINK_CB(skb).portid;
}

struct nlmsghdr *cthelper_shim_nfnl_msg_put(struct sk_buff *skb, u32 portid,
					    u32 seq, int type, int flags,
					    u8 family, u8 version, __be16 res_id)
{
	return nfnl_msg_put(skb, portid, seq, type, flags, family, version,
			    res_id);
}

void cthelper_shim_nlmsg_end(struct sk_buff *skb, struct nlmsghdr *nlh)
{
	nlmsg_end(skb, nlh);
}

void cthelper_shim_nlmsg_cancel(struct sk_buff *skb, struct nlmsghdr *nlh)
{
	nlmsg_cancel(skb, nlh);
}

struct nlattr *cthelper_shim_nla_nest_start(struct sk_buff *skb, int attrtype)
{
	return nla_nest_start(skb, attrtype);
}

void cthelper_shim_nla_nest_end(struct sk_buff *skb, struct nlattr *start)
{
	nla_nest_end(skb, start);
}

/* netlink_dump_start() records THIS_MODULE, which must be this module. */
int cthelper_shim_netlink_dump_start(struct sock *ssk, struct sk_buff *skb,
				     const struct nlmsghdr *nlh,
				     int (*dump)(struct sk_buff *skb,
						 struct netlink_callback *cb))
{
	struct netlink_dump_control c = {
		.dump = dump,
	};

	return netlink_dump_start(ssk, skb, nlh, &c);
}
