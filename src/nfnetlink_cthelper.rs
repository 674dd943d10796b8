// SPDX-License-Identifier: GPL-2.0

//! The nfnetlink `cthelper` subsystem: `net/netfilter/nfnetlink_cthelper.c` in safe Rust.
//!
//! The functions below follow the C ones, name for name. Everything `unsafe` lives in the
//! abstraction modules; this module cannot contain any (`forbid(unsafe_code)`).

#![forbid(unsafe_code)]

use crate::{
    bindings,
    conntrack::{
        self, ExpectPolicy, Helper, HelperConfig, HelperName, HelperOps, HelperView, RcuGuard,
        Tuple, HELPER_NAME_LEN, HELP_DATA_LEN, MAX_EXPECT_CLASSES,
    },
    netlink::{
        parse_nested, Attr, Attributes, Attrs, Message, MessageBuf, OwnedMessageBuf, Policy,
        PolicyEntry, Request,
    },
    nfnetlink::{self, Callback, Callbacks, DumpState, Info, SubsysLock, SubsysLocked, Subsystem},
    rules::{self, Reject},
};
use kernel::{
    c_str,
    error::{code::*, Error},
    list::{impl_has_list_links, impl_list_arc_safe, impl_list_item, List, ListArc, ListLinks},
    prelude::*,
    str::CStr,
};

const SUBSYS_ID: u8 = bindings::NFNL_SUBSYS_CTHELPER as u8;

// Message types.
const MSG_NEW: u8 = bindings::NFNL_MSG_CTHELPER_NEW as u8;
const MSG_GET: u8 = bindings::NFNL_MSG_CTHELPER_GET as u8;
const MSG_DEL: u8 = bindings::NFNL_MSG_CTHELPER_DEL as u8;
const MSG_MAX: usize = bindings::NFNL_MSG_CTHELPER_MAX as usize;

// Top-level attributes (`NFCTH_*`); tables hold `__NFCTH_MAX` entries.
const NFCTH_ATTRS: usize = bindings::__NFCTH_MAX as usize;
const NFCTH_NAME: u32 = bindings::NFCTH_NAME;
const NFCTH_TUPLE: u32 = bindings::NFCTH_TUPLE;
const NFCTH_QUEUE_NUM: u32 = bindings::NFCTH_QUEUE_NUM;
const NFCTH_POLICY: u32 = bindings::NFCTH_POLICY;
const NFCTH_PRIV_DATA_LEN: u32 = bindings::NFCTH_PRIV_DATA_LEN;
const NFCTH_STATUS: u32 = bindings::NFCTH_STATUS;

// Attributes nested in `NFCTH_TUPLE`.
const NFCTH_TUPLE_ATTRS: usize = bindings::__NFCTH_TUPLE_MAX as usize;
const NFCTH_TUPLE_L3PROTONUM: u32 = bindings::NFCTH_TUPLE_L3PROTONUM;
const NFCTH_TUPLE_L4PROTONUM: u32 = bindings::NFCTH_TUPLE_L4PROTONUM;

// Attributes nested in `NFCTH_POLICY`.
const NFCTH_POLICY_SET_ATTRS: usize = bindings::__NFCTH_POLICY_SET_MAX as usize;
const NFCTH_POLICY_SET_NUM: u32 = bindings::NFCTH_POLICY_SET_NUM;
const NFCTH_POLICY_SET: u32 = bindings::NFCTH_POLICY_SET;

// Attributes nested in each `NFCTH_POLICY_SET + i`.
const NFCTH_POLICY_ATTRS: usize = bindings::__NFCTH_POLICY_MAX as usize;
const NFCTH_POLICY_NAME: u32 = bindings::NFCTH_POLICY_NAME;
const NFCTH_POLICY_EXPECT_MAX: u32 = bindings::NFCTH_POLICY_EXPECT_MAX;
const NFCTH_POLICY_EXPECT_TIMEOUT: u32 = bindings::NFCTH_POLICY_EXPECT_TIMEOUT;

const NAME_MAX_LEN: u16 = (HELPER_NAME_LEN - 1) as u16;

// The pure rules restate UAPI and conntrack values; make sure they agree with the headers.
const _: () = {
    assert!(rules::NF_DROP == bindings::NF_DROP);
    assert!(rules::NF_ACCEPT == bindings::NF_ACCEPT);
    assert!(rules::NF_QUEUE == bindings::NF_QUEUE);
    assert!(rules::NF_VERDICT_QMASK == bindings::NF_VERDICT_QMASK);
    assert!(rules::NF_VERDICT_QBITS == bindings::NF_VERDICT_QBITS);
    assert!(rules::NF_VERDICT_FLAG_QUEUE_BYPASS == bindings::NF_VERDICT_FLAG_QUEUE_BYPASS);
    assert!(rules::F_USERSPACE == conntrack::F_USERSPACE);
    assert!(rules::F_CONFIGURED == conntrack::F_CONFIGURED);
    assert!(rules::STATUS_DISABLED == bindings::NFCT_HELPER_STATUS_DISABLED);
    assert!(rules::STATUS_ENABLED == bindings::NFCT_HELPER_STATUS_ENABLED);
    assert!(rules::MAX_EXPECT_CLASSES == MAX_EXPECT_CLASSES);
};

fn reject(r: Reject) -> Error {
    match r {
        Reject::Invalid => EINVAL,
        Reject::Overflow => Error::from_errno(-(bindings::EOVERFLOW as i32)),
        Reject::NoRoom => ENOMEM,
    }
}

/// A helper created through this subsystem (C: `struct nfnl_cthelper`).
#[pin_data]
struct NfnlCthelper {
    #[pin]
    links: ListLinks,
    #[pin]
    helper: Helper<SUBSYS_ID>,
}

impl_has_list_links! {
    impl HasListLinks<0> for NfnlCthelper { self.links }
}
impl_list_arc_safe! {
    impl ListArcSafe<0> for NfnlCthelper { untracked; }
}
impl_list_item! {
    impl ListItem<0> for NfnlCthelper { using ListLinks; }
}

/// The helpers this module created, oldest first (C: `nfnl_cthelper_list`).
static NFNL_CTHELPER_LIST: SubsysLocked<List<NfnlCthelper>, SUBSYS_ID> =
    SubsysLocked::new(List::new());

/// The callbacks of every helper this module creates.
struct UserspaceCthelper;

#[vtable]
impl HelperOps for UserspaceCthelper {
    /// C: `nfnl_userspace_cthelper()`.
    #[inline]
    fn help(ct: &conntrack::Conn, rcu: &RcuGuard) -> u32 {
        // No helper extension, or no helper in it: NF_DROP either way, as in C.
        let Some(helper) = ct.helper(rcu) else {
            return rules::NF_DROP;
        };
        rules::help_verdict(helper.flags(), helper.queue_num())
    }

    /// C: `nfnl_cthelper_from_nlattr()`.
    #[inline]
    fn from_nlattr(attr: Option<&Attr>, ct: &conntrack::Conn, rcu: &RcuGuard) -> Result {
        let attr = attr.ok_or(EINVAL)?;
        let help = ct.help().ok_or(EINVAL)?;
        match help.helper(rcu) {
            Some(helper) if helper.data_len() != 0 => {}
            _ => return Err(EINVAL),
        }
        let mut data = [0u8; HELP_DATA_LEN];
        attr.memcpy_to(&mut data);
        // Beyond C, which copies straight into `help->data` with no lock: the area is written
        // whole under the conntrack's lock, so a concurrent dump never sees half of it.
        ct.set_help_data(&data);
        Ok(())
    }

    /// C: `nfnl_cthelper_to_nlattr()`.
    #[inline]
    fn to_nlattr(skb: &mut MessageBuf, ct: &conntrack::Conn, rcu: &RcuGuard) -> Result {
        let Some(help) = ct.help() else {
            return Ok(());
        };
        if let Some(helper) = help.helper(rcu) {
            let len = usize::from(helper.data_len()).min(HELP_DATA_LEN);
            if len != 0 {
                // A copy taken under the conntrack's lock (see `from_nlattr`).
                let mut data = [0u8; HELP_DATA_LEN];
                if !ct.help_data(&mut data) {
                    return Err(EINVAL);
                }
                skb.put(bindings::CTA_HELP_INFO as u16, &data[..len])
                    .map_err(|_| ENOSPC)?;
            }
        }
        Ok(())
    }
}

static NFNL_CTHELPER_TUPLE_POL: Policy<NFCTH_TUPLE_ATTRS> = Policy::empty()
    .with(NFCTH_TUPLE_L3PROTONUM, PolicyEntry::u16())
    .with(NFCTH_TUPLE_L4PROTONUM, PolicyEntry::u8());

/// C: `nfnl_cthelper_parse_tuple()`.
fn nfnl_cthelper_parse_tuple(attr: &Attr) -> Result<Tuple> {
    let mut tb = Attrs::EMPTY;
    parse_nested(&mut tb, attr, &NFNL_CTHELPER_TUPLE_POL)?;
    let (Some(l3), Some(l4)) = (
        tb.get(NFCTH_TUPLE_L3PROTONUM),
        tb.get(NFCTH_TUPLE_L4PROTONUM),
    ) else {
        return Err(EINVAL);
    };
    Ok(Tuple {
        l3num: l3.get_be16(),
        protonum: l4.get_u8(),
    })
}

static NFNL_CTHELPER_EXPECT_POL: Policy<NFCTH_POLICY_ATTRS> = Policy::empty()
    .with(NFCTH_POLICY_NAME, PolicyEntry::nul_string(NAME_MAX_LEN))
    .with(NFCTH_POLICY_EXPECT_MAX, PolicyEntry::u32())
    .with(NFCTH_POLICY_EXPECT_TIMEOUT, PolicyEntry::u32());

/// The three attributes of one expectation policy, all required.
fn expect_policy_attrs<'a>(
    tb: &Attrs<'a, NFCTH_POLICY_ATTRS>,
) -> Result<(&'a Attr, &'a Attr, &'a Attr)> {
    match (
        tb.get(NFCTH_POLICY_NAME),
        tb.get(NFCTH_POLICY_EXPECT_MAX),
        tb.get(NFCTH_POLICY_EXPECT_TIMEOUT),
    ) {
        (Some(name), Some(max), Some(timeout)) => Ok((name, max, timeout)),
        _ => Err(EINVAL),
    }
}

/// C: `nfnl_cthelper_expect_policy()`: fills `expect_policy` from the nest `attr`; on error it
/// is left partly written, as in C.
fn nfnl_cthelper_expect_policy(expect_policy: &mut ExpectPolicy, attr: &Attr) -> Result {
    let mut tb = Attrs::EMPTY;
    parse_nested(&mut tb, attr, &NFNL_CTHELPER_EXPECT_POL)?;
    let (name, max, timeout) = expect_policy_attrs(&tb)?;

    expect_policy.name = HelperName::from_attr(name);
    expect_policy.max_expected = max.get_be32();
    if expect_policy.max_expected > conntrack::EXPECT_MAX_CNT {
        return Err(EINVAL);
    }
    expect_policy.timeout = timeout.get_be32();
    Ok(())
}

// `NFCTH_POLICY_SET + i` nests are checked one by one, as in C.
static NFNL_CTHELPER_EXPECT_POLICY_SET: Policy<NFCTH_POLICY_SET_ATTRS> =
    Policy::empty().with(NFCTH_POLICY_SET_NUM, PolicyEntry::u32());

/// C: `nfnl_cthelper_parse_expect_policy()`: fills the first classes of `policies` from the
/// `NFCTH_POLICY` nest `attr` and returns how many (1 to `MAX_EXPECT_CLASSES`).
fn nfnl_cthelper_parse_expect_policy(
    policies: &mut [ExpectPolicy; MAX_EXPECT_CLASSES],
    attr: &Attr,
) -> Result<usize> {
    let mut tb = Attrs::EMPTY;
    parse_nested(&mut tb, attr, &NFNL_CTHELPER_EXPECT_POLICY_SET)?;
    let num = tb.get(NFCTH_POLICY_SET_NUM).ok_or(EINVAL)?.get_be32();
    let classes = rules::expect_classes(num).map_err(reject)?;

    for (i, policy) in policies.iter_mut().take(classes).enumerate() {
        // Upstream answers -EINVAL for any bad policy, whatever the parser said.
        let set = tb.get(NFCTH_POLICY_SET + i as u32).ok_or(EINVAL)?;
        nfnl_cthelper_expect_policy(policy, set).map_err(|_| EINVAL)?;
    }
    Ok(classes)
}

/// C: `nfnl_cthelper_create()`.
fn nfnl_cthelper_create(
    tb: &Attrs<'_, NFCTH_ATTRS>,
    tuple: Tuple,
    list: &mut List<NfnlCthelper>,
) -> Result {
    let (Some(name), Some(_), Some(policy), Some(priv_data_len)) = (
        tb.get(NFCTH_NAME),
        tb.get(NFCTH_TUPLE),
        tb.get(NFCTH_POLICY),
        tb.get(NFCTH_PRIV_DATA_LEN),
    ) else {
        return Err(EINVAL);
    };

    let mut policies = [ExpectPolicy::EMPTY; MAX_EXPECT_CLASSES];
    let classes = nfnl_cthelper_parse_expect_policy(&mut policies, policy)?;

    let helper_name = HelperName::from_attr(name);
    let data_len = rules::priv_data_len(priv_data_len.get_be32(), HELP_DATA_LEN).map_err(reject)?;

    let mut flags = rules::F_USERSPACE;
    // Default to queue number zero, this can be updated at any time.
    let queue_num = tb.get(NFCTH_QUEUE_NUM).map_or(0, Attr::get_be32);
    if let Some(status) = tb.get(NFCTH_STATUS) {
        flags = rules::apply_status(flags, status.get_be32());
    }

    let config = HelperConfig {
        name: helper_name.as_cstr(),
        tuple,
        policies: &policies[..classes],
        data_len,
        flags,
        queue_num,
    };
    let nlcth = ListArc::pin_init(
        try_pin_init!(NfnlCthelper {
            links <- ListLinks::new(),
            helper <- Helper::register::<UserspaceCthelper>(config, &crate::THIS_MODULE),
        }? Error),
        GFP_KERNEL,
    )?;
    list.push_back(nlcth);
    Ok(())
}

/// C: `nfnl_cthelper_update_policy_one()`: the new `(max_expected, timeout)` of one class.
fn nfnl_cthelper_update_policy_one(policy: &ExpectPolicy, attr: &Attr) -> Result<(u32, u32)> {
    let mut tb = Attrs::EMPTY;
    parse_nested(&mut tb, attr, &NFNL_CTHELPER_EXPECT_POL)?;
    let (name, max, timeout) = expect_policy_attrs(&tb)?;

    // A class cannot be renamed: the name is how user space tells the classes apart.
    if name.strcmp(policy.name.as_cstr()) != 0 {
        return Err(EBUSY);
    }
    let max_expected = max.get_be32();
    if max_expected > conntrack::EXPECT_MAX_CNT {
        return Err(EINVAL);
    }
    Ok((max_expected, timeout.get_be32()))
}

/// C: `nfnl_cthelper_update_policy_all()`.
///
/// Every class is checked before any is changed, so a bad request leaves the helper as it was.
fn nfnl_cthelper_update_policy_all(
    tb: &Attrs<'_, NFCTH_POLICY_SET_ATTRS>,
    helper: &Helper<SUBSYS_ID>,
    lock: &SubsysLock<SUBSYS_ID>,
) -> Result {
    let classes = helper.view().expect_classes();
    let mut new_policy = [(0u32, 0u32); MAX_EXPECT_CLASSES];

    for (i, new) in new_policy.iter_mut().take(classes).enumerate() {
        let set = tb.get(NFCTH_POLICY_SET + i as u32).ok_or(EINVAL)?;
        let policy = helper.view().expect_policy(i).ok_or(EINVAL)?;
        *new = nfnl_cthelper_update_policy_one(&policy, set)?;
    }
    // Now we can safely update them.
    for (i, &(max_expected, timeout)) in new_policy.iter().take(classes).enumerate() {
        helper.set_expect_limits(i, max_expected, timeout, lock);
    }
    Ok(())
}

/// C: `nfnl_cthelper_update_policy()`.
fn nfnl_cthelper_update_policy(
    helper: &Helper<SUBSYS_ID>,
    attr: &Attr,
    lock: &SubsysLock<SUBSYS_ID>,
) -> Result {
    let mut tb = Attrs::EMPTY;
    parse_nested(&mut tb, attr, &NFNL_CTHELPER_EXPECT_POLICY_SET)?;
    let class_max = tb.get(NFCTH_POLICY_SET_NUM).ok_or(EINVAL)?.get_be32();
    if helper.view().expect_classes() as u32 != class_max {
        return Err(EBUSY);
    }
    nfnl_cthelper_update_policy_all(&tb, helper, lock)
}

/// C: `nfnl_cthelper_update()`.
fn nfnl_cthelper_update(
    tb: &Attrs<'_, NFCTH_ATTRS>,
    helper: &Helper<SUBSYS_ID>,
    lock: &SubsysLock<SUBSYS_ID>,
) -> Result {
    if let Some(size) = tb.get(NFCTH_PRIV_DATA_LEN) {
        if size.get_be32() != u32::from(helper.view().data_len()) {
            return Err(EBUSY);
        }
    }
    if let Some(policy) = tb.get(NFCTH_POLICY) {
        nfnl_cthelper_update_policy(helper, policy, lock)?;
    }
    if let Some(queue_num) = tb.get(NFCTH_QUEUE_NUM) {
        helper.set_queue_num(queue_num.get_be32(), lock);
    }
    if let Some(status) = tb.get(NFCTH_STATUS) {
        // A read-modify-write, safe as every writer holds the subsystem mutex.
        let flags = rules::apply_status(helper.view().flags(), status.get_be32());
        helper.set_flags(flags, lock);
    }
    Ok(())
}

/// Whether `helper` is selected by a request's optional name and tuple.
fn nfnl_cthelper_matches(helper: &HelperView, name: Option<&CStr>, tuple: Option<Tuple>) -> bool {
    if let Some(name) = name {
        if !helper.name_matches(name) {
            return false;
        }
    }
    match tuple {
        Some(tuple) => tuple == helper.tuple(),
        None => true,
    }
}

/// The `NFCTH_NAME` string, which `nla_parse()` guarantees to end with a NUL within
/// `NF_CT_HELPER_NAME_LEN` bytes (`NLA_NUL_STRING`, `-EINVAL` otherwise).
fn nfnl_cthelper_name(attr: &Attr) -> Result<&CStr> {
    attr.nul_string().ok_or(EINVAL)
}

/// C: `nfnl_cthelper_new()`.
struct NfnlCthelperNew;

impl nfnetlink::Handler<SUBSYS_ID, NFCTH_ATTRS> for NfnlCthelperNew {
    fn call(
        _skb: &Request,
        info: &Info<'_>,
        tb: &Attrs<'_, NFCTH_ATTRS>,
        lock: &mut SubsysLock<SUBSYS_ID>,
    ) -> Result {
        if !nfnetlink::capable_net_admin() {
            return Err(EPERM);
        }
        let (Some(name), Some(tuple)) = (tb.get(NFCTH_NAME), tb.get(NFCTH_TUPLE)) else {
            return Err(EINVAL);
        };
        let helper_name = nfnl_cthelper_name(name)?;
        let tuple = nfnl_cthelper_parse_tuple(tuple)?;

        let (list, lock) = NFNL_CTHELPER_LIST.get_and_proof(lock);
        if let Some(cur) = list
            .iter()
            .find(|cur| nfnl_cthelper_matches(cur.helper.view(), Some(helper_name), Some(tuple)))
        {
            if info.nlmsg_flags() & bindings::NLM_F_EXCL as u16 != 0 {
                return Err(EEXIST);
            }
            return nfnl_cthelper_update(tb, &cur.helper, lock);
        }
        nfnl_cthelper_create(tb, tuple, list)
    }
}
/// C: `nfnl_cthelper_dump_tuple()`.
fn nfnl_cthelper_dump_tuple(skb: &mut Message<'_>, helper: &HelperView) -> Result {
    let mut nest = skb.nest_start(NFCTH_TUPLE as u16)?;
    let tuple = helper.tuple();
    nest.put_be16(NFCTH_TUPLE_L3PROTONUM as u16, tuple.l3num)?;
    nest.put_u8(NFCTH_TUPLE_L4PROTONUM as u16, tuple.protonum)?;
    nest.end();
    Ok(())
}

/// C: `nfnl_cthelper_dump_policy()`.
fn nfnl_cthelper_dump_policy(skb: &mut Message<'_>, helper: &HelperView) -> Result {
    let mut nest1 = skb.nest_start(NFCTH_POLICY as u16)?;
    let classes = helper.expect_classes();
    nest1.put_be32(NFCTH_POLICY_SET_NUM as u16, classes as u32)?;
    for i in 0..classes {
        let policy = helper.expect_policy(i).ok_or(EINVAL)?;
        let mut nest2 = nest1.nest_start((NFCTH_POLICY_SET + i as u32) as u16)?;
        nest2.put_string(NFCTH_POLICY_NAME as u16, policy.name.as_cstr())?;
        nest2.put_be32(NFCTH_POLICY_EXPECT_MAX as u16, policy.max_expected)?;
        nest2.put_be32(NFCTH_POLICY_EXPECT_TIMEOUT as u16, policy.timeout)?;
        nest2.end();
    }
    nest1.end();
    Ok(())
}

/// C: `nfnl_cthelper_fill_info()`: one `NFNL_MSG_CTHELPER_NEW` message describing `helper`.
///
/// Returns `skb->len`; on error the partial message is cancelled.
fn nfnl_cthelper_fill_info(
    skb: &mut MessageBuf,
    portid: u32,
    seq: u32,
    event: u8,
    helper: &HelperView,
) -> Result<u32> {
    let flags = if portid != 0 {
        bindings::NLM_F_MULTI as u16
    } else {
        0
    };
    let mut msg = skb.nfnl_msg_put(
        portid,
        seq,
        nfnetlink::msg_type(SUBSYS_ID, event),
        flags,
        bindings::AF_UNSPEC as u8,
    )?;

    msg.put_string(NFCTH_NAME as u16, helper.name())?;
    msg.put_be32(NFCTH_QUEUE_NUM as u16, helper.queue_num())?;
    nfnl_cthelper_dump_tuple(&mut msg, helper)?;
    nfnl_cthelper_dump_policy(&mut msg, helper)?;
    msg.put_be32(NFCTH_PRIV_DATA_LEN as u16, helper.data_len().into())?;
    let status = if helper.flags() & rules::F_CONFIGURED != 0 {
        rules::STATUS_ENABLED
    } else {
        rules::STATUS_DISABLED
    };
    msg.put_be32(NFCTH_STATUS as u16, status)?;

    msg.end();
    Ok(skb.length())
}

/// C: `nfnl_cthelper_dump_table()`: every user-space helper in the conntrack helper table.
///
/// `args[0]` is the bucket to go on from, `args[1]` the helper that did not fit last time.
struct NfnlCthelperDumpTable;

impl nfnetlink::Dump for NfnlCthelperDumpTable {
    fn dump(skb: &mut MessageBuf, cb: &mut DumpState<'_>) -> Result<u32> {
        let rcu = RcuGuard::lock();
        let last = cb.arg(1);
        let portid = cb.portid();
        let seq = cb.nlmsg_seq();

        'buckets: while cb.arg(0) < conntrack::helper_table_size() {
            loop {
                for cur in conntrack::helper_table_bucket(&rcu, cb.arg(0)) {
                    // Skip non-userspace conntrack helpers.
                    if cur.flags() & rules::F_USERSPACE == 0 {
                        continue;
                    }
                    if cb.arg(1) != 0 {
                        if cur.id() != last {
                            continue;
                        }
                        cb.set_arg(1, 0);
                    }
                    if nfnl_cthelper_fill_info(skb, portid, seq, MSG_NEW, cur).is_err() {
                        cb.set_arg(1, cur.id());
                        break 'buckets;
                    }
                }
                // The helper we stopped at is gone: dump this bucket again from its start.
                if cb.arg(1) != 0 {
                    cb.set_arg(1, 0);
                    continue;
                }
                break;
            }
            let next = cb.arg(0) + 1;
            cb.set_arg(0, next);
        }
        Ok(skb.length())
    }
}

/// The optional name and tuple that select helpers in GET and DEL requests.
fn nfnl_cthelper_filter<'a>(
    tb: &Attrs<'a, NFCTH_ATTRS>,
) -> Result<(Option<&'a CStr>, Option<Tuple>)> {
    let helper_name = match tb.get(NFCTH_NAME) {
        Some(attr) => Some(nfnl_cthelper_name(attr)?),
        None => None,
    };
    let tuple = match tb.get(NFCTH_TUPLE) {
        Some(attr) => Some(nfnl_cthelper_parse_tuple(attr)?),
        None => None,
    };
    Ok((helper_name, tuple))
}

/// C: `nfnl_cthelper_get()`.
struct NfnlCthelperGet;

impl nfnetlink::Handler<SUBSYS_ID, NFCTH_ATTRS> for NfnlCthelperGet {
    fn call(
        skb: &Request,
        info: &Info<'_>,
        tb: &Attrs<'_, NFCTH_ATTRS>,
        lock: &mut SubsysLock<SUBSYS_ID>,
    ) -> Result {
        if !nfnetlink::capable_net_admin() {
            return Err(EPERM);
        }
        if info.nlmsg_flags() & bindings::NLM_F_DUMP as u16 != 0 {
            return info.dump_start::<NfnlCthelperDumpTable>();
        }

        let (helper_name, tuple) = nfnl_cthelper_filter(tb)?;
        let list = NFNL_CTHELPER_LIST.get(lock);
        let Some(cur) = list
            .iter()
            .find(|cur| nfnl_cthelper_matches(cur.helper.view(), helper_name, tuple))
        else {
            // Upstream's `ret` starts as -ENOENT but is overwritten by the successful tuple
            // parse, so a request with a tuple that matches nothing is acked with 0. User space
            // sees that; keep it.
            return match tuple {
                Some(_) => Ok(()),
                None => Err(ENOENT),
            };
        };

        let mut skb2 = OwnedMessageBuf::new_default()?;
        let portid = skb.netlink_portid();
        let event = MSG_NEW;
        if nfnl_cthelper_fill_info(
            &mut skb2,
            portid,
            info.nlmsg_seq(),
            event,
            cur.helper.view(),
        )
        .is_err()
        {
            // Upstream hands back fill_info()'s -1, which reads as -EPERM. It cannot happen in
            // practice: one helper is far smaller than NLMSG_DEFAULT_SIZE.
            return Err(EPERM);
        }
        info.unicast(skb2, portid)
    }
}

/// C: `nfnl_cthelper_del()`.
struct NfnlCthelperDel;

impl nfnetlink::Handler<SUBSYS_ID, NFCTH_ATTRS> for NfnlCthelperDel {
    fn call(
        _skb: &Request,
        _info: &Info<'_>,
        tb: &Attrs<'_, NFCTH_ATTRS>,
        lock: &mut SubsysLock<SUBSYS_ID>,
    ) -> Result {
        if !nfnetlink::capable_net_admin() {
            return Err(EPERM);
        }
        let (helper_name, tuple) = nfnl_cthelper_filter(tb)?;

        let (list, lock) = NFNL_CTHELPER_LIST.get_and_proof(lock);
        let mut kept = List::new();
        let mut ret = Err(ENOENT);
        let mut found = false;
        let mut seen = 0;

        while let Some(nlcth) = list.pop_front() {
            seen += 1;
            if !nfnl_cthelper_matches(nlcth.helper.view(), helper_name, tuple) {
                kept.push_back(nlcth);
                continue;
            }
            // A helper that an nft ct helper object or an xt CT rule still holds stays.
            if nlcth.helper.release_if_unused(lock) {
                found = true;
                // Dropping it unregisters the helper, then frees it.
                drop(nlcth);
            } else {
                ret = Err(EBUSY);
                kept.push_back(nlcth);
            }
        }
        list.push_all_back(&mut kept);

        // Make sure we return success if we flush and there is no helpers.
        if found || seen == 0 {
            Ok(())
        } else {
            ret
        }
    }
}

static NFNL_CTHELPER_POLICY: Policy<NFCTH_ATTRS> = Policy::empty()
    .with(NFCTH_NAME, PolicyEntry::nul_string(NAME_MAX_LEN))
    .with(NFCTH_QUEUE_NUM, PolicyEntry::u32())
    .with(NFCTH_PRIV_DATA_LEN, PolicyEntry::u32())
    .with(NFCTH_STATUS, PolicyEntry::u32());

static NFNL_CTHELPER_CB: Callbacks<SUBSYS_ID, MSG_MAX> = Callbacks::empty()
    .with(
        MSG_NEW,
        Callback::mutex::<NFCTH_ATTRS, NfnlCthelperNew>(&NFNL_CTHELPER_POLICY),
    )
    .with(
        MSG_GET,
        Callback::mutex::<NFCTH_ATTRS, NfnlCthelperGet>(&NFNL_CTHELPER_POLICY),
    )
    .with(
        MSG_DEL,
        Callback::mutex::<NFCTH_ATTRS, NfnlCthelperDel>(&NFNL_CTHELPER_POLICY),
    );

static NFNL_CTHELPER_SUBSYS: Subsystem<SUBSYS_ID> =
    Subsystem::new(c_str!("cthelper"), NFNL_CTHELPER_CB.as_slice());

/// The module: the subsystem's registration, and through the list, every helper it created.
pub(crate) struct NfnlCthelperModule {
    subsys: Option<nfnetlink::Registration<SUBSYS_ID>>,
}

impl kernel::Module for NfnlCthelperModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let subsys =
            nfnetlink::Registration::register(&NFNL_CTHELPER_SUBSYS).inspect_err(|_| {
                pr_err!("cannot register with nfnetlink.\n");
            })?;
        Ok(Self {
            subsys: Some(subsys),
        })
    }
}

impl Drop for NfnlCthelperModule {
    fn drop(&mut self) {
        // No request may find a helper that is going away: unregister the subsystem first.
        drop(self.subsys.take());

        let mut helpers = List::new();
        {
            let mut lock = SubsysLock::<SUBSYS_ID>::lock();
            helpers.push_all_back(NFNL_CTHELPER_LIST.get(&mut lock));
        }
        // Each helper is unregistered (its conntracks and expectations detached) and freed.
        drop(helpers);
    }
}
