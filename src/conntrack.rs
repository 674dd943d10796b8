// SPDX-License-Identifier: GPL-2.0

//! Connection tracking helpers: registration, the helper table and the helper callbacks.
//!
//! C header: [`include/net/netfilter/nf_conntrack_helper.h`](srctree/include/net/netfilter/nf_conntrack_helper.h)

use crate::bindings;
use crate::netlink::{Attr, SkBuff};
use core::{marker::PhantomData, ptr::addr_of_mut};
use kernel::{
    error::{to_result, Error, Result},
    ffi::{c_int, c_uint},
    init::{pin_init_from_closure, PinInit},
    prelude::*,
    types::Opaque,
    ThisModule,
};

/// `NF_CT_HELPER_NAME_LEN`: size of a helper or policy name, NUL included.
pub const HELPER_NAME_LEN: usize = bindings::NF_CT_HELPER_NAME_LEN as usize;
/// `NF_CT_MAX_EXPECT_CLASSES`: the most expectation classes a helper has.
pub const MAX_EXPECT_CLASSES: usize = bindings::NF_CT_MAX_EXPECT_CLASSES as usize;
/// `NF_CT_EXPECT_MAX_CNT`: the largest `max_expected` of a policy.
pub const EXPECT_MAX_CNT: u32 = bindings::NF_CT_EXPECT_MAX_CNT;
/// `sizeof_field(struct nf_conn_help, data)`: room for a helper's private data.
pub const HELP_DATA_LEN: usize = bindings::CTHELPER_CONST_HELP_DATA_LEN as usize;

/// `NF_CT_HELPER_F_USERSPACE`: the helper's work is done in user space.
pub const F_USERSPACE: u32 = bindings::NF_CT_HELPER_F_USERSPACE;
/// `NF_CT_HELPER_F_CONFIGURED`: a user-space helper is configured and takes packets.
pub const F_CONFIGURED: u32 = bindings::NF_CT_HELPER_F_CONFIGURED;

/// The part of a conntrack tuple a helper is looked up by.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tuple {
    /// Layer 3 protocol (`tuple.src.l3num`), e.g. `AF_INET`.
    pub l3num: u16,
    /// Layer 4 protocol (`tuple.dst.protonum`), e.g. `IPPROTO_TCP`.
    pub protonum: u8,
}

/// The expectation policy of one class (`struct nf_conntrack_expect_policy`).
#[derive(Clone, Copy)]
pub struct ExpectPolicy {
    /// Class name, NUL-terminated.
    pub name: [u8; HELPER_NAME_LEN],
    /// Most expectations of this class at once.
    pub max_expected: u32,
    /// Expectation timeout in seconds.
    pub timeout: u32,
}

impl ExpectPolicy {
    /// An empty policy, to be filled in.
    pub const fn zeroed() -> Self {
        Self {
            name: [0; HELPER_NAME_LEN],
            max_expected: 0,
            timeout: 0,
        }
    }

    fn from_raw(raw: &bindings::nf_conntrack_expect_policy) -> Self {
        Self {
            name: raw.name,
            max_expected: raw.max_expected,
            timeout: raw.timeout,
        }
    }
}

/// Proof that the RCU read lock is held.
///
/// # Invariants
///
/// The current task is in an RCU read-side critical section while this object exists; if
/// `owned`, one this object entered.
pub struct RcuGuard {
    owned: bool,
    _not_send: PhantomData<*mut ()>,
}

impl RcuGuard {
    /// `rcu_read_lock()`; `rcu_read_unlock()` when dropped.
    pub fn lock() -> Self {
        // SAFETY: FFI call with no preconditions.
        unsafe { bindings::cthelper_shim_rcu_read_lock() };
        // INVARIANT: We just entered a critical section.
        Self {
            owned: true,
            _not_send: PhantomData,
        }
    }

    /// # Safety
    ///
    /// The caller must be in an RCU read-side critical section for the object's lifetime.
    unsafe fn assume_held() -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self {
            owned: false,
            _not_send: PhantomData,
        }
    }
}

impl Drop for RcuGuard {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: By the type invariants, we entered the critical section.
            unsafe { bindings::cthelper_shim_rcu_read_unlock() };
        }
    }
}

/// A registered conntrack helper, ours or another module's, seen read-only.
///
/// # Invariants
///
/// `self.0` is a helper in the conntrack helper table, which stays valid while the reference
/// lives (the reference is tied to an [`RcuGuard`] or to the owning [`Helper`]).
#[repr(transparent)]
pub struct HelperView(Opaque<bindings::nf_conntrack_helper>);

impl HelperView {
    /// # Safety
    ///
    /// `ptr` must point to a helper valid for `'a` (see the type invariants).
    unsafe fn from_raw<'a>(ptr: *const bindings::nf_conntrack_helper) -> &'a Self {
        // SAFETY: Guaranteed by the caller; `HelperView` is transparent.
        unsafe { &*ptr.cast::<Self>() }
    }

    fn raw(&self) -> *mut bindings::nf_conntrack_helper {
        self.0.get()
    }

    /// The helper's name: the bytes of `name` before the NUL.
    pub fn name(&self) -> &[u8] {
        // SAFETY: `name` is set before registration and never written after.
        let name = unsafe { &(*self.raw()).name };
        let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        &name[..len]
    }

    /// An identity for the helper, for remembering where a dump stopped.
    pub fn id(&self) -> usize {
        self.raw() as usize
    }

    /// The protocols it helps.
    pub fn tuple(&self) -> Tuple {
        // SAFETY: `tuple` is set before registration and never written after.
        let tuple = unsafe { &(*self.raw()).tuple };
        Tuple {
            l3num: tuple.src.l3num,
            protonum: tuple.dst.protonum,
        }
    }

    /// `READ_ONCE(helper->flags)`.
    pub fn flags(&self) -> u32 {
        // SAFETY: The helper is valid; the read is `READ_ONCE()`, as flags change under readers.
        unsafe { bindings::cthelper_shim_helper_flags_read(self.raw()) }
    }

    /// `helper->queue_num`.
    pub fn queue_num(&self) -> u32 {
        // SAFETY: The helper is valid; the field is an integer written whole.
        unsafe { core::ptr::read_volatile(addr_of_mut!((*self.raw()).queue_num)) }
    }

    /// `helper->data_len`.
    pub fn data_len(&self) -> u16 {
        // SAFETY: `data_len` is set before registration and never written after.
        unsafe { (*self.raw()).data_len }
    }

    /// Number of expectation classes (`expect_class_max + 1`).
    pub fn expect_classes(&self) -> usize {
        // SAFETY: `expect_class_max` is set before registration and never written after.
        unsafe { (*self.raw()).expect_class_max as usize + 1 }
    }

    /// `helper->expect_policy[class]`, for `class < expect_classes()`.
    pub fn expect_policy(&self, class: usize) -> Option<ExpectPolicy> {
        if class >= self.expect_classes() {
            return None;
        }
        // SAFETY: A registered helper has `expect_class_max + 1` policies, and `class` is
        // below that; they are integers and a name array, read whole.
        let policy = unsafe { &*(*self.raw()).expect_policy.add(class) };
        Some(ExpectPolicy::from_raw(policy))
    }
}

/// `nf_ct_helper_hsize`: number of buckets of the conntrack helper table.
pub fn helper_table_size() -> usize {
    // SAFETY: Set once when conntrack is initialised, before this module can load.
    unsafe { bindings::nf_ct_helper_hsize as usize }
}

/// The helpers in bucket `bucket` of the conntrack helper table, under RCU.
pub fn helper_table_bucket(_rcu: &RcuGuard, bucket: usize) -> HelperBucketIter<'_> {
    let first = if bucket < helper_table_size() {
        // SAFETY: `bucket` is within the table, and we are in an RCU read-side critical section.
        unsafe { bindings::cthelper_shim_helper_hash_first_rcu(bucket as c_uint) }
    } else {
        core::ptr::null_mut()
    };
    HelperBucketIter {
        next: first,
        _rcu: PhantomData,
    }
}

/// Iterator over one bucket of the helper table (`hlist_for_each_entry_rcu`).
pub struct HelperBucketIter<'a> {
    next: *mut bindings::nf_conntrack_helper,
    _rcu: PhantomData<&'a RcuGuard>,
}

impl<'a> Iterator for HelperBucketIter<'a> {
    type Item = &'a HelperView;

    fn next(&mut self) -> Option<&'a HelperView> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: `next` came from the RCU-protected hash list and the guard lives for `'a`, so
        // the helper stays valid that long.
        let cur = unsafe { HelperView::from_raw(self.next) };
        // SAFETY: As above; `cur` is in the list.
        self.next = unsafe { bindings::cthelper_shim_helper_hash_next_rcu(cur.raw()) };
        Some(cur)
    }
}

/// A conntrack (`struct nf_conn`), as the helper callbacks see it.
#[repr(transparent)]
pub struct Conn(Opaque<bindings::nf_conn>);

impl Conn {
    /// `nfct_help(ct)`: the conntrack's helper extension, if it has one.
    pub fn help(&self) -> Option<&HelpExt> {
        // SAFETY: `self` is a valid conntrack.
        let help = unsafe { bindings::cthelper_shim_nfct_help(self.0.get()) };
        // SAFETY: A non-null extension lives as long as the conntrack; `HelpExt` is transparent.
        unsafe { help.cast::<HelpExt>().as_ref() }
    }
}

/// The helper extension of a conntrack (`struct nf_conn_help`).
#[repr(transparent)]
pub struct HelpExt(Opaque<bindings::nf_conn_help>);

impl HelpExt {
    /// `rcu_dereference(help->helper)`.
    pub fn helper<'a>(&'a self, _rcu: &'a RcuGuard) -> Option<&'a HelperView> {
        // SAFETY: We are in an RCU read-side critical section, as `rcu_dereference` requires.
        let helper = unsafe { bindings::cthelper_shim_help_helper_rcu(self.0.get()) };
        if helper.is_null() {
            return None;
        }
        // SAFETY: The helper is valid until the critical section ends, which outlives `'a`.
        Some(unsafe { HelperView::from_raw(helper) })
    }

    /// A copy of the private data area (`help->data`).
    pub fn data(&self) -> [u8; HELP_DATA_LEN] {
        // SAFETY: The area belongs to the conntrack's helper, which is the caller.
        unsafe { (*self.0.get()).data }
    }

    /// Replaces the private data area (`help->data`).
    pub fn set_data(&self, data: &[u8; HELP_DATA_LEN]) {
        // SAFETY: The area belongs to the conntrack's helper, which is the caller; ctnetlink
        // serialises changes of a conntrack's helper data.
        unsafe { (*self.0.get()).data = *data };
    }
}

/// The callbacks of a conntrack helper.
pub trait HelperOps {
    /// `help`: the verdict for a packet of a conntrack using the helper.
    fn help(ct: &Conn, rcu: &RcuGuard) -> u32;
    /// `from_nlattr`: sets the private data of `ct` from a `CTA_HELP_INFO` attribute.
    fn from_nlattr(attr: Option<&Attr>, ct: &Conn, rcu: &RcuGuard) -> Result;
    /// `to_nlattr`: puts the private data of `ct` into `skb` as `CTA_HELP_INFO`.
    fn to_nlattr(skb: &SkBuff, ct: &Conn, rcu: &RcuGuard) -> Result;
}

/// # Safety
///
/// Called by conntrack through the function pointer of the same name in `struct
/// nf_conntrack_helper`.
unsafe extern "C" fn help_callback<T: HelperOps>(
    _skb: *mut bindings::sk_buff,
    _protoff: c_uint,
    ct: *mut bindings::nf_conn,
    _ctinfo: bindings::ip_conntrack_info,
) -> c_int {
    // SAFETY: Helpers run from netfilter hooks, under `rcu_read_lock()`.
    let rcu = unsafe { RcuGuard::assume_held() };
    // SAFETY: Conntrack passes the packet's conntrack, valid during the call.
    let ct = unsafe { &*ct.cast::<Conn>() };
    // The verdict is an `unsigned int` handed back through an `int`.
    T::help(ct, &rcu) as c_int
}

/// # Safety
///
/// Called by conntrack through the function pointer of the same name in `struct
/// nf_conntrack_helper`.
unsafe extern "C" fn from_nlattr_callback<T: HelperOps>(
    attr: *mut bindings::nlattr,
    ct: *mut bindings::nf_conn,
) -> c_int {
    // SAFETY: ctnetlink calls this under `rcu_read_lock()`.
    let rcu = unsafe { RcuGuard::assume_held() };
    // SAFETY: ctnetlink passes a conntrack valid during the call.
    let ct = unsafe { &*ct.cast::<Conn>() };
    // SAFETY: `attr` is null or a `CTA_HELP_INFO` attribute that ctnetlink parsed from the
    // request, valid during the call.
    let attr = unsafe { attr.cast::<Attr>().as_ref() };
    match T::from_nlattr(attr, ct, &rcu) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by conntrack through the function pointer of the same name in `struct
/// nf_conntrack_helper`.
unsafe extern "C" fn to_nlattr_callback<T: HelperOps>(
    skb: *mut bindings::sk_buff,
    ct: *const bindings::nf_conn,
) -> c_int {
    // SAFETY: ctnetlink calls this under `rcu_read_lock()`.
    let rcu = unsafe { RcuGuard::assume_held() };
    // SAFETY: ctnetlink passes the socket buffer it is filling, ours until we return.
    let skb = unsafe { SkBuff::from_raw(skb) };
    // SAFETY: ctnetlink passes a conntrack valid during the call.
    let ct = unsafe { &*ct.cast::<Conn>() };
    match T::to_nlattr(skb, ct, &rcu) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// What a new helper is made of.
pub struct HelperConfig<'a> {
    /// Name, NUL-terminated within [`HELPER_NAME_LEN`] bytes.
    pub name: [u8; HELPER_NAME_LEN],
    /// Protocols it helps.
    pub tuple: Tuple,
    /// Expectation policies, one per class (1 to [`MAX_EXPECT_CLASSES`]).
    pub policies: &'a [ExpectPolicy],
    /// Length of its private data, at most [`HELP_DATA_LEN`].
    pub data_len: u16,
    /// Initial flags.
    pub flags: u32,
    /// NFQUEUE number its packets go to.
    pub queue_num: u32,
}

/// A conntrack helper owned by this module, registered with conntrack for its whole life.
///
/// Its expectation policies live in the same allocation, so `expect_policy` never dangles and
/// updating them allocates nothing.
///
/// # Invariants
///
/// `raw` is registered with `nf_conntrack_helper_register()`, and its `expect_policy` points to
/// `policies`, of which the first `expect_class_max + 1` entries are in use.
#[pin_data(PinnedDrop)]
pub struct Helper {
    #[pin]
    raw: Opaque<bindings::nf_conntrack_helper>,
    #[pin]
    policies: Opaque<[bindings::nf_conntrack_expect_policy; MAX_EXPECT_CLASSES]>,
}

// SAFETY: The helper is shared with conntrack, which reads it from any CPU. The fields that
// change after registration (flags, queue number, policy values) are only written by
// `&self` methods that callers serialise with the nfnetlink subsystem mutex, and are read with
// `READ_ONCE()` or as whole integers, exactly as the C implementation does.
unsafe impl Send for Helper {}
// SAFETY: See `Send`.
unsafe impl Sync for Helper {}

impl Helper {
    /// Builds the helper in place and registers it (`nf_conntrack_helper_register()`).
    ///
    /// Registration errors are returned as they are; nothing is left registered then.
    pub fn register<'a, T: HelperOps>(
        config: HelperConfig<'a>,
        module: &'static ThisModule,
    ) -> impl PinInit<Self, Error> + 'a {
        let init = move |slot: *mut Self| -> Result {
            if config.policies.is_empty() || config.policies.len() > MAX_EXPECT_CLASSES {
                return Err(EINVAL);
            }
            // SAFETY: `slot` is valid for writes of a `Self`; both fields are `Opaque`.
            let raw = unsafe { Opaque::raw_get(core::ptr::addr_of!((*slot).raw)) };
            // SAFETY: As above.
            let policies = unsafe { Opaque::raw_get(core::ptr::addr_of!((*slot).policies)) };
            // SAFETY: All-zero is a valid (empty) helper and valid policies, as the C
            // implementation's `kzalloc()` relies on.
            unsafe {
                raw.write(core::mem::zeroed());
                policies.write(core::mem::zeroed());
            }
            let policies = policies.cast::<bindings::nf_conntrack_expect_policy>();
            for (i, p) in config.policies.iter().enumerate() {
                // SAFETY: `i < MAX_EXPECT_CLASSES`, checked above.
                let dst = unsafe { &mut *policies.add(i) };
                dst.name = p.name;
                dst.max_expected = p.max_expected;
                dst.timeout = p.timeout;
            }
            // SAFETY: `raw` was just initialised and nothing else refers to it yet.
            let h = unsafe { &mut *raw };
            h.name = config.name;
            h.tuple.src.l3num = config.tuple.l3num;
            h.tuple.dst.protonum = config.tuple.protonum;
            h.expect_policy = policies;
            h.expect_class_max = (config.policies.len() - 1) as c_uint;
            h.data_len = config.data_len;
            h.flags = config.flags;
            h.queue_num = config.queue_num;
            h.me = module.as_ptr().cast();
            h.help = Some(help_callback::<T>);
            h.from_nlattr = Some(from_nlattr_callback::<T>);
            h.to_nlattr = Some(to_nlattr_callback::<T>);
            // SAFETY: The helper is fully initialised at its final, pinned address, which stays
            // valid until `PinnedDrop` unregisters it; its policies live beside it.
            to_result(unsafe { bindings::nf_conntrack_helper_register(raw) })
        };
        // SAFETY: On success the closure initialised every field; on error it registered
        // nothing, so the memory may be freed; the helper is never moved after registration.
        unsafe { pin_init_from_closure(init) }
    }

    /// The helper, seen as conntrack sees it.
    pub fn view(&self) -> &HelperView {
        // SAFETY: By the type invariants, the helper is registered and stays so while `self`
        // lives.
        unsafe { HelperView::from_raw(self.raw.get()) }
    }

    /// `WRITE_ONCE(helper->flags, flags)`.
    pub fn set_flags(&self, flags: u32) {
        // SAFETY: The helper is valid; packet-path readers use `READ_ONCE()`.
        unsafe { bindings::cthelper_shim_helper_flags_write(self.raw.get(), flags) };
    }

    /// `helper->queue_num = queue_num`.
    pub fn set_queue_num(&self, queue_num: u32) {
        // SAFETY: The helper is valid; the field is an integer written whole.
        unsafe { core::ptr::write_volatile(addr_of_mut!((*self.raw.get()).queue_num), queue_num) };
    }

    /// Updates the limits of expectation class `class` (its name never changes).
    pub fn set_expect_limits(&self, class: usize, max_expected: u32, timeout: u32) {
        if class >= self.view().expect_classes() {
            return;
        }
        let policies = self
            .policies
            .get()
            .cast::<bindings::nf_conntrack_expect_policy>();
        // SAFETY: By the type invariants, `class` indexes a policy in use, in our allocation.
        // Readers (expectation code) read these integers whole.
        unsafe {
            let p = policies.add(class);
            core::ptr::write_volatile(addr_of_mut!((*p).max_expected), max_expected);
            core::ptr::write_volatile(addr_of_mut!((*p).timeout), timeout);
        }
    }

    /// `refcount_dec_if_one(&helper->refcnt)`: drops the registration's reference only when
    /// nothing else (an nft `ct helper` object, an xt `CT` target) holds the helper.
    pub fn release_if_unused(&self) -> bool {
        // SAFETY: The helper is valid.
        unsafe { bindings::cthelper_shim_helper_refcount_dec_if_one(self.raw.get()) }
    }
}

#[pinned_drop]
impl PinnedDrop for Helper {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants, the helper is registered. Unregistering waits for RCU
        // readers and detaches it from every conntrack and expectation, so the memory may be
        // freed once this returns.
        unsafe { bindings::nf_conntrack_helper_unregister(self.raw.get()) };
    }
}
