// SPDX-License-Identifier: GPL-2.0

//! nfnetlink subsystems: registration, message callbacks, unicast replies and dumps.
//!
//! C header: [`include/linux/netfilter/nfnetlink.h`](srctree/include/linux/netfilter/nfnetlink.h)

use crate::bindings;
use crate::netlink::{Attrs, OwnedSkBuff, Policy, SkBuff};
use core::{cell::UnsafeCell, marker::PhantomData};
use kernel::{
    error::{to_result, Error, Result},
    ffi::{c_int, c_long},
    str::CStr,
};

/// `nfnl_msg_type()`: the netlink message type of message `msg` of subsystem `subsys`.
pub const fn msg_type(subsys: u8, msg: u8) -> u16 {
    ((subsys as u16) << 8) | msg as u16
}

/// `capable(CAP_NET_ADMIN)` for the current task.
pub fn capable_net_admin() -> bool {
    // SAFETY: FFI call with no preconditions.
    unsafe { bindings::capable(bindings::CAP_NET_ADMIN as c_int) }
}

/// Proof that the nfnetlink mutex of subsystem `ID` (`nfnl_lock(ID)`) is held.
///
/// Message callbacks of type `NFNL_CB_MUTEX` receive one from nfnetlink; other code takes the
/// mutex with [`SubsysLock::lock`].
///
/// # Invariants
///
/// The mutex of subsystem `ID` is held while this object exists; if `owned`, by this object.
pub struct SubsysLock<const ID: u8> {
    owned: bool,
    // The mutex must be released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl<const ID: u8> SubsysLock<ID> {
    /// `nfnl_lock(ID)`; released when the returned object is dropped.
    pub fn lock() -> Self {
        // SAFETY: FFI call; any subsystem id is valid.
        unsafe { bindings::nfnl_lock(ID) };
        // INVARIANT: We just took the mutex.
        Self {
            owned: true,
            _not_send: PhantomData,
        }
    }

    /// # Safety
    ///
    /// The caller must hold the mutex of subsystem `ID` for the lifetime of the returned object.
    unsafe fn assume_held() -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self {
            owned: false,
            _not_send: PhantomData,
        }
    }
}

impl<const ID: u8> Drop for SubsysLock<ID> {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: By the type invariants, we hold the mutex.
            unsafe { bindings::nfnl_unlock(ID) };
        }
    }
}

/// Data that only code holding the nfnetlink mutex of subsystem `ID` may touch.
///
/// It is to `nfnl_lock()` what `LockedBy` is to a Rust lock: the C code this replaces keeps its
/// list of helpers in a plain global that only message callbacks (and module exit) touch.
pub struct SubsysLocked<T, const ID: u8>(UnsafeCell<T>);

// SAFETY: The inner value is only reached through `get`, with the subsystem mutex held, so it is
// never touched by two tasks at once; it may move between tasks, hence `T: Send`.
unsafe impl<T: Send, const ID: u8> Sync for SubsysLocked<T, ID> {}

impl<T, const ID: u8> SubsysLocked<T, ID> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The inner value, for as long as the mutex is held and the lock borrowed.
    pub fn get<'a>(&'a self, _lock: &'a mut SubsysLock<ID>) -> &'a mut T {
        // SAFETY: The mutex of subsystem `ID` is held (type invariant of `SubsysLock`), and the
        // lock object is borrowed mutably for `'a`, so no other reference obtained through
        // `get` can exist at the same time.
        unsafe { &mut *self.0.get() }
    }
}

/// The message being handled by a callback (`struct nfnl_info`).
///
/// # Invariants
///
/// `self.raw` is the `nfnl_info` nfnetlink passed to the running callback.
pub struct Info<'a> {
    raw: &'a bindings::nfnl_info,
}

impl Info<'_> {
    fn nlh(&self) -> &bindings::nlmsghdr {
        // SAFETY: By the type invariants, `nlh` points to the message being handled.
        unsafe { &*self.raw.nlh }
    }

    /// `nlh->nlmsg_flags`.
    pub fn nlmsg_flags(&self) -> u16 {
        self.nlh().nlmsg_flags
    }

    /// `nlh->nlmsg_seq`.
    pub fn nlmsg_seq(&self) -> u32 {
        self.nlh().nlmsg_seq
    }

    /// `nfnetlink_unicast()`: sends `skb` to netlink port `portid` in the message's namespace.
    pub fn unicast(&self, skb: OwnedSkBuff, portid: u32) -> Result {
        // SAFETY: `nfnetlink_unicast()` consumes the buffer we own; `net` is the namespace
        // of the message being handled.
        to_result(unsafe { bindings::nfnetlink_unicast(skb.into_raw(), self.raw.net, portid) })
    }

    /// `netlink_dump_start()`: answers the message with a dump made by `D`.
    ///
    /// Returns what nfnetlink expects back from the callback (`-EINTR` once the dump started).
    pub fn dump_start<D: Dump>(&self, skb: &SkBuff) -> Result {
        // SAFETY: `sk`, `skb` and `nlh` are those of the message being handled, as
        // `netlink_dump_start()` requires; the shim records this module as the dump's owner, so
        // the module (and `dump_callback::<D>`) stays loaded while the dump runs.
        to_result(unsafe {
            bindings::cthelper_shim_netlink_dump_start(
                self.raw.sk,
                skb.as_raw(),
                self.raw.nlh,
                Some(dump_callback::<D>),
            )
        })
    }
}

/// A multi-part reply (`struct netlink_callback`), resumed once per socket buffer.
///
/// # Invariants
///
/// `self.raw` is the `netlink_callback` of the running dump, which only this dump touches.
pub struct DumpState<'a> {
    raw: &'a mut bindings::netlink_callback,
}

impl DumpState<'_> {
    /// `cb->args[i]`: state kept between the parts of the dump (zero at the start).
    pub fn arg(&self, i: usize) -> usize {
        // SAFETY: `args` is the member of the union that dump callbacks use for their state;
        // every bit pattern is a valid `long`.
        let args = unsafe { &self.raw.__bindgen_anon_1.args };
        args.get(i).map_or(0, |&v| v as usize)
    }

    /// Sets `cb->args[i]`.
    pub fn set_arg(&mut self, i: usize, value: usize) {
        // SAFETY: As in `arg`.
        let args = unsafe { &mut self.raw.__bindgen_anon_1.args };
        if let Some(slot) = args.get_mut(i) {
            *slot = value as c_long;
        }
    }

    /// `NETLINK_CB(cb->skb).portid`: the port that asked for the dump.
    pub fn portid(&self) -> u32 {
        // SAFETY: `cb->skb` is the request's socket buffer, valid while the dump runs.
        unsafe { SkBuff::from_raw(self.raw.skb) }.netlink_portid()
    }

    fn nlh(&self) -> &bindings::nlmsghdr {
        // SAFETY: `cb->nlh` is the request's header, valid while the dump runs.
        unsafe { &*self.raw.nlh }
    }

    /// `cb->nlh->nlmsg_seq`.
    pub fn nlmsg_seq(&self) -> u32 {
        self.nlh().nlmsg_seq
    }
}

/// A dump callback (`netlink_dump_control.dump`).
pub trait Dump {
    /// Fills `skb` with the next part of the dump and returns `skb->len`; zero ends it.
    fn dump(skb: &SkBuff, state: &mut DumpState<'_>) -> Result<u32>;
}

/// # Safety
///
/// Called by netlink as `netlink_dump_control.dump`, with the buffer to fill and the dump's state.
unsafe extern "C" fn dump_callback<D: Dump>(
    skb: *mut bindings::sk_buff,
    cb: *mut bindings::netlink_callback,
) -> c_int {
    // SAFETY: netlink passes the socket buffer being filled, which is ours until we return.
    let skb = unsafe { SkBuff::from_raw(skb) };
    // SAFETY: netlink passes this dump's callback state, which only this dump touches.
    let raw = unsafe { &mut *cb };
    let mut state = DumpState { raw };
    match D::dump(skb, &mut state) {
        Ok(len) => len as c_int,
        Err(e) => e.to_errno(),
    }
}

/// A message callback of subsystem `ID` with an attribute table of `N` entries.
pub trait Handler<const ID: u8, const N: usize> {
    /// Handles one message; runs with the subsystem mutex held.
    fn call(skb: &SkBuff, info: &Info<'_>, tb: &Attrs<'_, N>, lock: &mut SubsysLock<ID>) -> Result;
}

/// # Safety
///
/// Called by nfnetlink as `nfnl_callback.call` of an `NFNL_CB_MUTEX` entry whose policy has `N`
/// entries.
unsafe extern "C" fn mutex_callback<const ID: u8, const N: usize, H: Handler<ID, N>>(
    skb: *mut bindings::sk_buff,
    info: *const bindings::nfnl_info,
    cda: *const *const bindings::nlattr,
) -> c_int {
    // SAFETY: `NFNL_CB_MUTEX` callbacks run with `nfnl_lock(ID)` held, until they return.
    let mut lock = unsafe { SubsysLock::<ID>::assume_held() };
    // SAFETY: nfnetlink passes the request's socket buffer, valid until we return.
    let skb = unsafe { SkBuff::from_raw(skb) };
    // SAFETY: nfnetlink passes the message's info, valid until we return.
    let raw = unsafe { &*info };
    let info = Info { raw };
    // SAFETY: nfnetlink passes a table of `attr_count + 1 == N` entries, each null or an
    // attribute of the message validated against the callback's policy.
    let tb = unsafe { Attrs::<N>::from_raw(cda) };
    match H::call(skb, &info, &tb, &mut lock) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// One entry of a subsystem's callback table (`struct nfnl_callback`).
#[repr(transparent)]
pub struct Callback(bindings::nfnl_callback);

// SAFETY: A callback entry is never written after it is built; C code only reads it.
unsafe impl Sync for Callback {}

impl Callback {
    /// A callback run with the subsystem mutex held (`NFNL_CB_MUTEX`), whose top-level
    /// attributes are validated against `policy`.
    pub const fn mutex<const ID: u8, const N: usize, H: Handler<ID, N>>(
        policy: &'static Policy<N>,
    ) -> Self {
        Self(bindings::nfnl_callback {
            call: Some(mutex_callback::<ID, N, H>),
            policy: policy.as_raw(),
            type_: bindings::NFNL_CB_MUTEX,
            attr_count: (N - 1) as u16,
        })
    }
}

/// An nfnetlink subsystem (`struct nfnetlink_subsystem`).
#[repr(transparent)]
pub struct Subsystem(bindings::nfnetlink_subsystem);

// SAFETY: A subsystem description is never written after it is built; C code only reads it.
unsafe impl Sync for Subsystem {}

impl Subsystem {
    /// Describes subsystem `id`, handling message type `i` with `callbacks[i]`.
    pub const fn new(name: &'static CStr, id: u8, callbacks: &'static [Callback]) -> Self {
        // SAFETY: Zero is valid for the remaining fields: no owner, no batch operations.
        let mut raw: bindings::nfnetlink_subsystem = unsafe { core::mem::zeroed() };
        raw.name = name.as_char_ptr();
        raw.subsys_id = id;
        raw.cb_count = callbacks.len() as u8;
        raw.cb = callbacks.as_ptr().cast();
        Self(raw)
    }
}

/// A registered nfnetlink subsystem; dropping it unregisters it.
///
/// # Invariants
///
/// `self.subsys` is registered with nfnetlink.
pub struct Registration {
    subsys: &'static Subsystem,
}

impl Registration {
    /// `nfnetlink_subsys_register()`.
    pub fn register(subsys: &'static Subsystem) -> Result<Self> {
        // SAFETY: `subsys` and the tables it points to are static, so they outlive the
        // registration.
        let ret = unsafe { bindings::nfnetlink_subsys_register(&subsys.0) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: It was just registered.
        Ok(Self { subsys })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the subsystem is registered. Once this returns no
        // callback of it runs or will run (dumps hold a module reference of their own).
        unsafe { bindings::nfnetlink_subsys_unregister(&self.subsys.0) };
    }
}
