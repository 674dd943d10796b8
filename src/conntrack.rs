// SPDX-License-Identifier: GPL-2.0

//! Connection tracking helpers: registration, the helper table and the helper callbacks.
//!
//! C header: [`include/net/netfilter/nf_conntrack_helper.h`](srctree/include/net/netfilter/nf_conntrack_helper.h)
//!
//! # Memory shared with other CPUs
//!
//! A registered helper is read by the conntrack core, ctnetlink and dumps on any CPU while its
//! owner updates it. No Rust reference is ever formed to a field that changes after
//! registration: flags, queue number and policy limits are read and written whole through raw
//! pointers with `READ_ONCE()`/`WRITE_ONCE()` semantics (volatile accesses of aligned integers,
//! as `READ_ONCE()` is in C), and writers are serialised by the lock named in [`Helper`]'s type.
//! A conntrack's helper private data is copied in and out under the conntrack's own lock.

use crate::bindings;
use crate::netlink::{Attr, MessageBuf};
use crate::nfnetlink::SubsysLock;
use core::{
    marker::PhantomData,
    ptr::{addr_of, addr_of_mut},
};
use kernel::{
    c_str,
    error::{from_result, to_result, Error, Result, VTABLE_DEFAULT_ERROR},
    ffi::{c_int, c_uint},
    init::{pin_init_from_closure, PinInit},
    prelude::*,
    str::CStr,
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

/// A helper or expectation-class name (`char name[NF_CT_HELPER_NAME_LEN]`): at most
/// [`HELPER_NAME_LEN`]` - 1` bytes and a NUL, zero-padded.
///
/// # Invariants
///
/// The last byte of `self.0` is NUL.
#[derive(Clone, Copy)]
pub struct HelperName([u8; HELPER_NAME_LEN]);

impl HelperName {
    /// The empty name.
    // INVARIANT: All bytes are NUL.
    pub const EMPTY: Self = Self([0; HELPER_NAME_LEN]);

    /// `nla_strscpy(name, attr, NF_CT_HELPER_NAME_LEN)`: the attribute's string, truncated to
    /// fit.
    #[inline]
    pub fn from_attr(attr: &Attr) -> Self {
        let mut name = [0u8; HELPER_NAME_LEN];
        attr.strscpy(&mut name);
        // `nla_strscpy()` already ends the copy with a NUL; the invariant need not rely on it.
        name[HELPER_NAME_LEN - 1] = 0;
        // INVARIANT: The last byte was just set to NUL.
        Self(name)
    }

    /// The name as a C string (up to its first NUL).
    #[inline]
    pub fn as_cstr(&self) -> &CStr {
        cstr_in(&self.0)
    }
}

/// The C string at the start of `buf`, up to its first NUL (empty if `buf` has none).
///
/// The kernel's `strnlen()` finds the NUL: a search in Rust followed by `CStr`'s own check for
/// an interior NUL took five times its text.
#[inline(never)]
fn cstr_in(buf: &[u8]) -> &CStr {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes, and `strnlen()` reads at most that.
    let len = unsafe { bindings::strnlen(buf.as_ptr().cast(), buf.len()) };
    match buf.get(..=len) {
        // SAFETY: `buf[len]` is the first NUL of `buf`, as `strnlen()` found it.
        Some(with_nul) => unsafe { CStr::from_bytes_with_nul_unchecked(with_nul) },
        None => c_str!(""),
    }
}

/// The expectation policy of one class (`struct nf_conntrack_expect_policy`).
#[derive(Clone, Copy)]
pub struct ExpectPolicy {
    /// Class name.
    pub name: HelperName,
    /// Most expectations of this class at once.
    pub max_expected: u32,
    /// Expectation timeout in seconds.
    pub timeout: u32,
}

impl ExpectPolicy {
    /// A policy with an empty name and no limits, to be filled in.
    pub const EMPTY: Self = Self {
        name: HelperName::EMPTY,
        max_expected: 0,
        timeout: 0,
    };
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
    #[inline]
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
    #[inline]
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: By the type invariants, we entered the critical section.
            unsafe { bindings::cthelper_shim_rcu_read_unlock() };
        }
    }
}

/// A registered conntrack helper, ours or another module's, seen read-only.
///
/// Fields set before registration and never written after (name, tuple, data length, number of
/// classes, class names) are read directly; the others (flags, queue number, policy limits)
/// with `READ_ONCE()` semantics, since their owner may write them at any time.
///
/// # Invariants
///
/// `self.0` is a helper in the conntrack helper table, which stays valid while the reference
/// lives (the reference is tied to an [`RcuGuard`] or to the owning [`Helper`]). Its
/// `expect_policy` points to `expect_class_max + 1` policies.
#[repr(transparent)]
pub struct HelperView(Opaque<bindings::nf_conntrack_helper>);

impl HelperView {
    /// # Safety
    ///
    /// `ptr` must point to a registered helper valid for `'a` (see the type invariants).
    unsafe fn from_raw<'a>(ptr: *const bindings::nf_conntrack_helper) -> &'a Self {
        // SAFETY: Guaranteed by the caller; `HelperView` is transparent.
        // INVARIANT: Guaranteed by the caller.
        unsafe { &*ptr.cast::<Self>() }
    }

    fn raw(&self) -> *mut bindings::nf_conntrack_helper {
        self.0.get()
    }

    /// The helper's name.
    #[inline]
    pub fn name(&self) -> &CStr {
        // SAFETY: `name` is set before registration and never written after, so a shared
        // reference to it is never aliased by a write.
        let name = unsafe { &*addr_of!((*self.raw()).name) };
        cstr_in(name)
    }

    /// Whether `strncmp(helper->name, name, NF_CT_HELPER_NAME_LEN) == 0`, by the kernel's
    /// `strncmp()`.
    #[inline]
    pub fn name_matches(&self, name: &CStr) -> bool {
        // SAFETY: `helper->name` is set before registration, never written after and ends with
        // a NUL; `name` ends with a NUL; `strncmp()` reads neither past its NUL.
        unsafe {
            bindings::strncmp(
                addr_of!((*self.raw()).name).cast(),
                name.as_char_ptr(),
                HELPER_NAME_LEN,
            ) == 0
        }
    }

    /// An identity for the helper, for remembering where a dump stopped.
    pub fn id(&self) -> usize {
        self.raw() as usize
    }

    /// The protocols it helps.
    pub fn tuple(&self) -> Tuple {
        // SAFETY: `tuple` is set before registration and never written after.
        let tuple = unsafe { &*addr_of!((*self.raw()).tuple) };
        Tuple {
            l3num: tuple.src.l3num,
            protonum: tuple.dst.protonum,
        }
    }

    /// `READ_ONCE(helper->flags)`.
    pub fn flags(&self) -> u32 {
        // SAFETY: The helper is valid; `flags` is an aligned integer, read whole.
        unsafe { core::ptr::read_volatile(addr_of!((*self.raw()).flags)) }
    }

    /// `READ_ONCE(helper->queue_num)`.
    pub fn queue_num(&self) -> u32 {
        // SAFETY: The helper is valid; `queue_num` is an aligned integer, read whole.
        unsafe { core::ptr::read_volatile(addr_of!((*self.raw()).queue_num)) }
    }

    /// `helper->data_len`, in bytes.
    pub fn data_len(&self) -> u16 {
        // SAFETY: `data_len` is set before registration and never written after.
        unsafe { *addr_of!((*self.raw()).data_len) }
    }

    /// Number of expectation classes (`expect_class_max + 1`).
    pub fn expect_classes(&self) -> usize {
        // SAFETY: `expect_class_max` is set before registration and never written after.
        unsafe { *addr_of!((*self.raw()).expect_class_max) as usize + 1 }
    }

    /// A copy of `helper->expect_policy[class]`, for `class < expect_classes()`.
    ///
    /// The limits are read with `READ_ONCE()` semantics, one field at a time: an update that
    /// runs meanwhile may be seen for one field and not the other, as by a dump of the C
    /// module. (The conntrack core reads them under `nf_conntrack_expect_lock`, which our
    /// updates take: it sees both or neither.)
    pub fn expect_policy(&self, class: usize) -> Option<ExpectPolicy> {
        if class >= self.expect_classes() {
            return None;
        }
        // SAFETY: By the type invariants `expect_policy` points to `expect_classes()` policies
        // and `class` is below that; the pointer is set before registration.
        let p = unsafe { (*addr_of!((*self.raw()).expect_policy)).add(class) };
        // SAFETY: `p` is a valid policy. Its name is set before registration and never written
        // after; the limits are aligned integers read whole, without forming a reference.
        unsafe {
            Some(ExpectPolicy {
                name: HelperName::from_raw_name(addr_of!((*p).name)),
                max_expected: core::ptr::read_volatile(addr_of!((*p).max_expected)),
                timeout: core::ptr::read_volatile(addr_of!((*p).timeout)),
            })
        }
    }
}

impl HelperName {
    /// Copies a helper or class name from a registered helper.
    ///
    /// # Safety
    ///
    /// `name` must be readable and not written during the call.
    unsafe fn from_raw_name(name: *const [u8; HELPER_NAME_LEN]) -> Self {
        // SAFETY: Guaranteed by the caller.
        let mut name = unsafe { name.read() };
        // Registered names end with a NUL (`nf_conntrack_helper_register()` checks it); the
        // invariant need not rely on other modules for it.
        name[HELPER_NAME_LEN - 1] = 0;
        // INVARIANT: The last byte was just set to NUL.
        Self(name)
    }
}

/// `nf_ct_helper_hsize`: number of buckets of the conntrack helper table.
pub fn helper_table_size() -> usize {
    // SAFETY: Set once when conntrack is initialised, before this module can load.
    unsafe { bindings::nf_ct_helper_hsize as usize }
}

/// The helpers in bucket `bucket` of the conntrack helper table, under RCU.
#[inline]
pub fn helper_table_bucket(_rcu: &RcuGuard, bucket: usize) -> HelperBucketIter<'_> {
    let first = if bucket < helper_table_size() {
        // SAFETY: `bucket` is within the table, and we are in an RCU read-side critical section.
        unsafe { bindings::cthelper_shim_helper_hash_first_rcu(bucket as c_uint) }
    } else {
        core::ptr::null_mut()
    };
    // INVARIANT: `first` is null or the first helper of the bucket, read under the RCU guard
    // that `'a` is tied to.
    HelperBucketIter {
        next: first,
        _rcu: PhantomData,
    }
}

/// Iterator over one bucket of the helper table (`hlist_for_each_entry_rcu`).
///
/// # Invariants
///
/// `next` is null or a helper of the bucket, read from the RCU-protected hash list within the
/// critical section of the guard `'a` borrows.
pub struct HelperBucketIter<'a> {
    next: *mut bindings::nf_conntrack_helper,
    _rcu: PhantomData<&'a RcuGuard>,
}

impl<'a> Iterator for HelperBucketIter<'a> {
    type Item = &'a HelperView;

    #[inline]
    fn next(&mut self) -> Option<&'a HelperView> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: By the type invariants `next` is a registered helper reached under RCU, and
        // the guard lives for `'a`, so the helper stays valid that long.
        let cur = unsafe { HelperView::from_raw(self.next) };
        // SAFETY: As above; `cur` is in the list.
        // INVARIANT: The next entry of the same RCU-protected list.
        self.next = unsafe { bindings::cthelper_shim_helper_hash_next_rcu(cur.raw()) };
        Some(cur)
    }
}

/// A conntrack (`struct nf_conn`), as the helper callbacks see it.
///
/// # Invariants
///
/// `self.0` is a valid conntrack for as long as the reference lives.
#[repr(transparent)]
pub struct Conn(Opaque<bindings::nf_conn>);

impl Conn {
    /// # Safety
    ///
    /// `ptr` must point to a conntrack valid for `'a`.
    unsafe fn from_raw<'a>(ptr: *const bindings::nf_conn) -> &'a Self {
        // SAFETY: Guaranteed by the caller; `Conn` is transparent.
        // INVARIANT: Guaranteed by the caller.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// `nfct_help(ct)`: the conntrack's helper extension, if it has one.
    #[inline]
    pub fn help(&self) -> Option<&HelpExt> {
        // SAFETY: By the type invariants, `self` is a valid conntrack.
        let help = unsafe { bindings::cthelper_shim_nfct_help(self.0.get()) };
        // Extensions move only when one is added (`nf_ct_ext_add()` may reallocate them), which
        // only the code creating a conntrack does, never while it runs one of its helper
        // callbacks, the only places a `&Conn` exists.
        // INVARIANT: `help` is the extension of this conntrack, valid as long as the borrow.
        // SAFETY: So the extension stays put for the borrow of `self`; `HelpExt` is transparent.
        unsafe { help.cast::<HelpExt>().as_ref() }
    }

    /// `rcu_dereference(nfct_help(ct)->helper)`: the conntrack's helper, `None` without a
    /// helper extension or without a helper. One call into C where [`Conn::help`] and
    /// [`HelpExt::helper`] make two: it is what the `help` callback needs for every packet.
    #[inline]
    pub fn helper<'a>(&'a self, _rcu: &'a RcuGuard) -> Option<&'a HelperView> {
        // SAFETY: By the type invariants, `self` is a valid conntrack, and we are in an RCU
        // read-side critical section, as `rcu_dereference` requires.
        let helper = unsafe { bindings::cthelper_shim_nfct_helper_rcu(self.0.get()) };
        if helper.is_null() {
            return None;
        }
        // SAFETY: A helper reached under RCU may be unhashed meanwhile, but its memory and
        // policies are not freed before the critical section ends, which outlives `'a`:
        // `nf_conntrack_helper_unregister()` waits for a grace period before its owner may free
        // them.
        Some(unsafe { HelperView::from_raw(helper) })
    }

    /// Copies the helper's private data area (`help->data`) into `data`; `false` (and `data`
    /// untouched) without a helper extension, or if the sizes differ (which the shim warns of).
    ///
    /// C reads the area without a lock, so a dump can see it half written by a concurrent
    /// update (ctnetlink and nfqueue verdicts write it with no common lock). Both sides copy
    /// it here under the conntrack's own lock (`ct->lock`, which ctnetlink also takes around the
    /// conntrack's sequence adjustment and protocol state): a reader sees the whole of one
    /// update or of the other. A conntrack template has no lock, and is copied as in C.
    #[inline]
    pub fn help_data(&self, data: &mut [u8; HELP_DATA_LEN]) -> bool {
        // The callbacks that reach this (`to_nlattr` from ctnetlink dumps and events and from the
        // nfqueue and nflog glue) never run with `ct->lock` held, which the shim takes.
        // SAFETY: By the type invariants, `self` is a valid conntrack; `data` is writable for
        // its length, which the shim checks against `sizeof(help->data)`.
        unsafe {
            bindings::cthelper_shim_help_data_read(self.0.get(), data.as_mut_ptr(), data.len())
        }
    }

    /// Replaces the helper's private data area (`help->data`) under the conntrack's lock (see
    /// [`Conn::help_data`]); `false` without a helper extension.
    #[inline]
    pub fn set_help_data(&self, data: &[u8; HELP_DATA_LEN]) -> bool {
        // SAFETY: By the type invariants, `self` is a valid conntrack; `data` is readable for
        // its length, which the shim checks. `from_nlattr` (ctnetlink's conntrack updates and
        // nfqueue verdicts) never runs with `ct->lock` held, which the shim takes.
        unsafe { bindings::cthelper_shim_help_data_write(self.0.get(), data.as_ptr(), data.len()) }
    }
}

/// The helper extension of a conntrack (`struct nf_conn_help`).
///
/// Only the helper pointer is reachable through it; the private data area is copied through
/// [`Conn::help_data`] and [`Conn::set_help_data`], which take the conntrack's lock.
///
/// # Invariants
///
/// `self.0` is the helper extension of a conntrack that is valid while the reference lives.
#[repr(transparent)]
pub struct HelpExt(Opaque<bindings::nf_conn_help>);

impl HelpExt {
    /// `rcu_dereference(help->helper)`.
    #[inline]
    pub fn helper<'a>(&'a self, _rcu: &'a RcuGuard) -> Option<&'a HelperView> {
        // SAFETY: By the type invariants the extension is valid, and we are in an RCU
        // read-side critical section, as `rcu_dereference` requires.
        let helper = unsafe { bindings::cthelper_shim_help_helper_rcu(self.0.get()) };
        if helper.is_null() {
            return None;
        }
        // SAFETY: A helper reached under RCU stays registered until the critical section
        // ends, which outlives `'a`.
        Some(unsafe { HelperView::from_raw(helper) })
    }
}

/// The callbacks of a conntrack helper (`help`, `from_nlattr`, `to_nlattr` of `struct
/// nf_conntrack_helper`); the last two are optional.
#[vtable]
pub trait HelperOps {
    /// `help`: the netfilter verdict (`NF_ACCEPT`, `NF_DROP`, `NF_QUEUE_NR(n)`, ...) for a
    /// packet of a conntrack using the helper. Runs in the packet path under RCU.
    fn help(ct: &Conn, rcu: &RcuGuard) -> u32;

    /// `from_nlattr`: sets the private data of `ct` from a `CTA_HELP_INFO` attribute (absent:
    /// `None`); ctnetlink ignores the result.
    fn from_nlattr(_attr: Option<&Attr>, _ct: &Conn, _rcu: &RcuGuard) -> Result {
        kernel::build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `to_nlattr`: puts the private data of `ct` into `skb` as `CTA_HELP_INFO`; ctnetlink
    /// ignores the result.
    fn to_nlattr(_skb: &mut MessageBuf, _ct: &Conn, _rcu: &RcuGuard) -> Result {
        kernel::build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// # Safety
///
/// Called by conntrack through `struct nf_conntrack_helper.help`.
unsafe extern "C" fn help_callback<T: HelperOps>(
    _skb: *mut bindings::sk_buff,
    _protoff: c_uint,
    ct: *mut bindings::nf_conn,
    _ctinfo: bindings::ip_conntrack_info,
) -> c_int {
    // SAFETY: Helpers run from netfilter hooks, under `rcu_read_lock()`.
    let rcu = unsafe { RcuGuard::assume_held() };
    // SAFETY: Conntrack passes the packet's conntrack, valid during the call.
    let ct = unsafe { Conn::from_raw(ct) };
    // The verdict is an `unsigned int` handed back through an `int`.
    T::help(ct, &rcu) as c_int
}

/// # Safety
///
/// Called by conntrack through `struct nf_conntrack_helper.from_nlattr`.
unsafe extern "C" fn from_nlattr_callback<T: HelperOps>(
    attr: *mut bindings::nlattr,
    ct: *mut bindings::nf_conn,
) -> c_int {
    from_result(|| {
        // SAFETY: Both callers, ctnetlink's conntrack updates (`ctnetlink_change_helper()`) and
        // nfqueue verdicts carrying a conntrack (`ctnetlink_glue_parse()`), hold
        // `rcu_read_lock()` around the call.
        let rcu = unsafe { RcuGuard::assume_held() };
        // SAFETY: Both pass a conntrack valid during the call.
        let ct = unsafe { Conn::from_raw(ct) };
        // SAFETY: `attr` is null or a `CTA_HELP_INFO` attribute that ctnetlink parsed from the
        // request, valid and unchanged during the call.
        let attr = unsafe { attr.cast::<Attr>().as_ref() };
        T::from_nlattr(attr, ct, &rcu)?;
        Ok(0)
    })
}

/// # Safety
///
/// Called by conntrack through `struct nf_conntrack_helper.to_nlattr`.
unsafe extern "C" fn to_nlattr_callback<T: HelperOps>(
    skb: *mut bindings::sk_buff,
    ct: *const bindings::nf_conn,
) -> c_int {
    from_result(|| {
        // SAFETY: The only caller, `ctnetlink_dump_helpinfo()` (ctnetlink dumps and events, and
        // the nfqueue and nflog glue), takes `rcu_read_lock()` around the call.
        let rcu = unsafe { RcuGuard::assume_held() };
        // SAFETY: It passes the socket buffer it is filling, which nobody else writes while we
        // append to it, until we return.
        let skb = unsafe { MessageBuf::from_raw(skb) };
        // SAFETY: It passes a conntrack valid during the call.
        let ct = unsafe { Conn::from_raw(ct) };
        T::to_nlattr(skb, ct, &rcu)?;
        Ok(0)
    })
}

/// What a new helper is made of.
pub struct HelperConfig<'a> {
    /// Name, at most [`HELPER_NAME_LEN`]` - 1` bytes (`EINVAL` otherwise).
    pub name: &'a CStr,
    /// Protocols it helps.
    pub tuple: Tuple,
    /// Expectation policies, one per class (1 to [`MAX_EXPECT_CLASSES`], `EINVAL` otherwise).
    pub policies: &'a [ExpectPolicy],
    /// Length of its private data in bytes, at most [`HELP_DATA_LEN`] (`EINVAL` otherwise).
    pub data_len: u16,
    /// Initial flags (`NF_CT_HELPER_F_*`).
    pub flags: u32,
    /// NFQUEUE number its packets go to.
    pub queue_num: u32,
}

/// A conntrack helper owned by this module, registered with conntrack for its whole life.
///
/// Its expectation policies are an allocation of their own, of exactly the classes in use (as
/// the C module's `kcalloc()`), owned by the helper through `expect_policy` and freed after
/// unregistration: the module's `ListArc` of a helper is then 184 bytes (kmalloc-192) instead
/// of 280 (kmalloc-512), and updating the policies allocates nothing. What changes after
/// registration (flags, queue number, policy limits) is written only by the setters, which
/// take the proof that the nfnetlink mutex of subsystem `ID` is held: writers are serialised by
/// it, and a read-modify-write of the flags under it cannot lose an update. Readers on other
/// CPUs see each field whole.
///
/// # Invariants
///
/// `raw` is registered with `nf_conntrack_helper_register()`, and its `expect_policy` points to
/// `expect_class_max + 1` policies from `cthelper_shim_expect_policy_alloc()`, which only this
/// helper refers to besides conntrack and which it frees after unregistering; `expect_policy`
/// is never written after registration. Its flags, queue number and policy limits are only
/// written with the mutex of nfnetlink subsystem `ID` held.
#[pin_data(PinnedDrop)]
pub struct Helper<const ID: u8> {
    #[pin]
    raw: Opaque<bindings::nf_conntrack_helper>,
}

// SAFETY: The helper is shared with conntrack, which reads it from any CPU. The fields that
// change after registration are written whole with `WRITE_ONCE()` semantics by setters that
// require the subsystem mutex (type invariants), and read whole with `READ_ONCE()` semantics.
// The policies' allocation may be freed from any task: `kfree()` has no task affinity.
unsafe impl<const ID: u8> Send for Helper<ID> {}
// SAFETY: See `Send`.
unsafe impl<const ID: u8> Sync for Helper<ID> {}

impl<const ID: u8> Helper<ID> {
    /// Builds the helper in place and registers it (`nf_conntrack_helper_register()`).
    ///
    /// `EINVAL` for a configuration out of range, `ENOMEM` when the policies cannot be
    /// allocated; registration errors (`EBUSY` for a helper of that name and tuple or one that
    /// clashes with a kernel helper, `ENOENT`, `EINVAL`) are returned as they are. Nothing is
    /// left registered or allocated on error.
    pub fn register<'a, T: HelperOps + 'static>(
        config: HelperConfig<'a>,
        module: &'static ThisModule,
    ) -> impl PinInit<Self, Error> + 'a {
        let init = move |slot: *mut Self| -> Result {
            if config.policies.is_empty()
                || config.policies.len() > MAX_EXPECT_CLASSES
                || config.name.len() >= HELPER_NAME_LEN
                || usize::from(config.data_len) > HELP_DATA_LEN
            {
                return Err(EINVAL);
            }
            // SAFETY: `slot` is valid for writes of a `Self`; the field is `Opaque`.
            let raw = unsafe { Opaque::raw_get(addr_of!((*slot).raw)) };
            // SAFETY: All-zero is a valid (empty) helper, as the C implementation's `kzalloc()`
            // relies on.
            unsafe { raw.write(core::mem::zeroed()) };
            // The number of classes is 1 to `MAX_EXPECT_CLASSES`, checked above.
            // SAFETY: An FFI call with no preconditions.
            let policies = unsafe {
                bindings::cthelper_shim_expect_policy_alloc(config.policies.len() as c_uint)
            };
            if policies.is_null() {
                return Err(ENOMEM);
            }
            for (i, p) in config.policies.iter().enumerate() {
                // SAFETY: `policies` is non-null (checked), aligned and zeroed by `kcalloc()`,
                // and all-zero is a valid `nf_conntrack_expect_policy`; it holds
                // `config.policies.len()` entries and `i` indexes one; nothing else refers to
                // them before registration.
                let dst = unsafe { &mut *policies.add(i) };
                dst.name = p.name.0;
                dst.max_expected = p.max_expected;
                dst.timeout = p.timeout;
            }
            // SAFETY: `raw` was just initialised and nothing else refers to it yet.
            let h = unsafe { &mut *raw };
            // The name is shorter than the array (checked above), so it keeps a NUL, as
            // `nf_conntrack_helper_register()` requires.
            h.name[..config.name.len_with_nul()].copy_from_slice(config.name.as_bytes_with_nul());
            h.tuple.src.l3num = config.tuple.l3num;
            h.tuple.dst.protonum = config.tuple.protonum;
            h.expect_policy = policies;
            h.expect_class_max = (config.policies.len() - 1) as c_uint;
            h.data_len = config.data_len;
            h.flags = config.flags;
            h.queue_num = config.queue_num;
            h.me = module.as_ptr().cast();
            h.help = Some(help_callback::<T>);
            h.from_nlattr = if T::HAS_FROM_NLATTR {
                Some(from_nlattr_callback::<T>)
            } else {
                None
            };
            h.to_nlattr = if T::HAS_TO_NLATTR {
                Some(to_nlattr_callback::<T>)
            } else {
                None
            };
            // SAFETY: The helper is fully initialised at its final, pinned address, which stays
            // valid until `PinnedDrop` unregisters it; so do its policies, which it owns.
            // INVARIANT: Registered on success, with `expect_policy` pointing to `policies`.
            let ret = to_result(unsafe { bindings::nf_conntrack_helper_register(raw) });
            if ret.is_err() {
                // SAFETY: Not registered: nothing but this closure refers to the policies.
                unsafe { bindings::cthelper_shim_expect_policy_free(policies) };
            }
            ret
        };
        // SAFETY: On success the closure initialised every field; on error it registered
        // nothing and freed the policies it allocated, so the memory may be freed; the helper
        // is never moved after registration.
        unsafe { pin_init_from_closure(init) }
    }

    /// The helper, seen as conntrack sees it.
    pub fn view(&self) -> &HelperView {
        // SAFETY: By the type invariants, the helper is registered and stays so while `self`
        // lives, with `expect_class_max + 1` policies.
        unsafe { HelperView::from_raw(self.raw.get()) }
    }

    /// `WRITE_ONCE(helper->flags, flags)`.
    pub fn set_flags(&self, flags: u32, _lock: &SubsysLock<ID>) {
        // SAFETY: The helper is valid; `flags` is an aligned integer written whole, which
        // readers read whole. The subsystem mutex serialises writers (type invariants).
        unsafe { core::ptr::write_volatile(addr_of_mut!((*self.raw.get()).flags), flags) };
    }

    /// `WRITE_ONCE(helper->queue_num, queue_num)`.
    pub fn set_queue_num(&self, queue_num: u32, _lock: &SubsysLock<ID>) {
        // SAFETY: As in `set_flags`.
        unsafe { core::ptr::write_volatile(addr_of_mut!((*self.raw.get()).queue_num), queue_num) };
    }

    /// Updates the limits of expectation class `class` (its name never changes); does nothing
    /// for a class the helper does not have.
    pub fn set_expect_limits(
        &self,
        class: usize,
        max_expected: u32,
        timeout: u32,
        _lock: &SubsysLock<ID>,
    ) {
        if class >= self.view().expect_classes() {
            return;
        }
        // SAFETY: `expect_policy` is set before registration and never written after (type
        // invariants). It is our own `*mut` allocation, stored as `*const` only because C
        // declares the field so: writing through it is ours to do.
        let policies = unsafe { (*self.raw.get()).expect_policy }.cast_mut();
        // The subsystem mutex serialises writers; no reference to the shared policy is formed.
        // The shim writes under `nf_conntrack_expect_lock`, which the conntrack core holds
        // while it reads the limits, and with `WRITE_ONCE()` for the dumps' `READ_ONCE()`.
        // SAFETY: By the type invariants, `class` indexes a policy in use, in the helper's own
        // allocation, valid for as long as `self`.
        unsafe {
            bindings::cthelper_shim_expect_policy_set_limits(
                policies.add(class),
                max_expected,
                timeout,
            )
        };
    }

    /// `refcount_dec_if_one(&helper->refcnt)`: drops the registration's reference only when
    /// nothing else (an nft `ct helper` object, an xt `CT` target) holds the helper.
    ///
    /// On `true` the caller must drop the helper (which unregisters it) before it releases the
    /// subsystem mutex: a helper kept registered after that can no longer be taken by new
    /// users (`nf_conntrack_helper_try_module_get()` fails). No memory is at risk then; the
    /// unregistration does not use the reference count.
    pub fn release_if_unused(&self, _lock: &SubsysLock<ID>) -> bool {
        // SAFETY: The helper is valid; the reference count is atomic.
        unsafe { bindings::cthelper_shim_helper_refcount_dec_if_one(self.raw.get()) }
    }
}

#[pinned_drop]
impl<const ID: u8> PinnedDrop for Helper<ID> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants, the helper is registered. Unregistering waits for RCU
        // readers and detaches it from every conntrack and expectation, so the memory may be
        // freed once this returns.
        unsafe { bindings::nf_conntrack_helper_unregister(self.raw.get()) };
        // SAFETY: Unregistered: conntrack no longer reads the policies (as above), and by the
        // type invariants nothing else refers to them; `expect_policy` was never written after
        // registration and is our own `kcalloc()` allocation (`const` only in C's declaration),
        // freed here once, as `nfnl_cthelper_del()` and `nfnl_cthelper_exit()` do.
        unsafe {
            bindings::cthelper_shim_expect_policy_free((*self.raw.get()).expect_policy.cast_mut())
        };
    }
}
