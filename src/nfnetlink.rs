// SPDX-License-Identifier: GPL-2.0

//! nfnetlink subsystems: registration, message callbacks, unicast replies and dumps.
//!
//! C header: [`include/linux/netfilter/nfnetlink.h`](srctree/include/linux/netfilter/nfnetlink.h)
//!
//! A subsystem's id is a const generic parameter of every type tied to it ([`Subsystem`],
//! [`Callback`], [`Handler`], [`SubsysLock`], [`SubsysLocked`]), so the lock proof a callback
//! receives is always that of the mutex nfnetlink holds while running it.

use crate::bindings;
use crate::netlink::{Attrs, MessageBuf, OwnedMessageBuf, Policy, Request};
use core::{cell::UnsafeCell, marker::PhantomData};
use kernel::{
    error::{from_result, to_result, Error, Result},
    ffi::{c_int, c_long},
    str::CStr,
};

/// `nfnl_msg_type()`: the netlink message type of message `msg` of subsystem `subsys`.
pub const fn msg_type(subsys: u8, msg: u8) -> u16 {
    ((subsys as u16) << 8) | msg as u16
}

/// `capable(CAP_NET_ADMIN)` for the current task.
#[inline]
pub fn capable_net_admin() -> bool {
    // SAFETY: FFI call with no preconditions.
    unsafe { bindings::capable(bindings::CAP_NET_ADMIN as c_int) }
}

/// Fails the build for a subsystem id that nfnetlink's tables (`NFNL_SUBSYS_COUNT` entries,
/// indexed without a check by `nfnl_lock()` and friends) do not have.
struct SubsysId<const ID: u8>;

impl<const ID: u8> SubsysId<ID> {
    const VALID: () = assert!(
        (ID as u32) < bindings::NFNL_SUBSYS_COUNT,
        "nfnetlink subsystem id out of range"
    );
}

/// Proof that the nfnetlink mutex of subsystem `ID` (`nfnl_lock(ID)`) is held.
///
/// Message callbacks of type `NFNL_CB_MUTEX` receive one from nfnetlink; other code takes the
/// mutex with [`SubsysLock::lock`].
///
/// # Invariants
///
/// `ID < NFNL_SUBSYS_COUNT`, and the mutex of subsystem `ID` is held while this object exists;
/// if `owned`, by this object.
pub struct SubsysLock<const ID: u8> {
    owned: bool,
    // The mutex must be released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl<const ID: u8> SubsysLock<ID> {
    /// `nfnl_lock(ID)`; released when the returned object is dropped.
    pub fn lock() -> Self {
        let () = SubsysId::<ID>::VALID;
        // SAFETY: `ID < NFNL_SUBSYS_COUNT`, checked at build time above, so `nfnl_lock()`
        // indexes its table of mutexes within bounds.
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
        let () = SubsysId::<ID>::VALID;
        // INVARIANT: Guaranteed by the caller; the id was checked at build time.
        Self {
            owned: false,
            _not_send: PhantomData,
        }
    }
}

impl<const ID: u8> Drop for SubsysLock<ID> {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: By the type invariants, we hold the mutex, and `ID` is in range.
            unsafe { bindings::nfnl_unlock(ID) };
        }
    }
}

/// Data that only code holding the nfnetlink mutex of subsystem `ID` may touch.
///
/// It is to `nfnl_lock()` what `LockedBy` is to a Rust lock: the C code this replaces keeps its
/// list of helpers in a plain global that only message callbacks (and module exit) touch.
///
/// # Invariants
///
/// The inner value is only reached through [`SubsysLocked::get`], with the mutex of subsystem
/// `ID` held and its proof borrowed mutably.
pub struct SubsysLocked<T, const ID: u8>(UnsafeCell<T>);

// SAFETY: By the type invariants the inner value is only touched with the subsystem mutex held,
// so never by two tasks at once; it may move between tasks, hence `T: Send`.
unsafe impl<T: Send, const ID: u8> Sync for SubsysLocked<T, ID> {}

impl<T, const ID: u8> SubsysLocked<T, ID> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        // INVARIANT: The value is only reachable through the methods below.
        Self(UnsafeCell::new(value))
    }

    /// The inner value, for as long as the mutex is held and the lock borrowed.
    pub fn get<'a>(&'a self, _lock: &'a mut SubsysLock<ID>) -> &'a mut T {
        // SAFETY: The mutex of subsystem `ID` is held (type invariant of `SubsysLock`), and the
        // lock object is borrowed mutably for `'a`, so no other reference obtained through
        // `get` can exist at the same time.
        unsafe { &mut *self.0.get() }
    }

    /// The inner value together with the proof that the mutex is held, for code that updates
    /// what the value holds through functions that require the proof.
    pub fn get_and_proof<'a>(
        &'a self,
        lock: &'a mut SubsysLock<ID>,
    ) -> (&'a mut T, &'a SubsysLock<ID>) {
        // SAFETY: As in `get`: the mutex is held and the lock object is borrowed mutably for
        // `'a`. Only a shared reborrow of it is handed back, through which `get` (which needs
        // it mutably) cannot be called, so the inner value stays exclusively ours.
        (unsafe { &mut *self.0.get() }, lock)
    }
}

/// The message being handled by a callback (`struct nfnl_info`).
///
/// # Invariants
///
/// `self.raw` is the `nfnl_info` nfnetlink passed to the running callback, whose `nlh`, `sk`
/// and `net` are valid until the callback returns, and `self.skb` the request they belong to.
pub struct Info<'a> {
    raw: &'a bindings::nfnl_info,
    skb: &'a Request,
}

impl Info<'_> {
    fn nlh(&self) -> &bindings::nlmsghdr {
        // SAFETY: By the type invariants, `nlh` points to the message being handled, which
        // nobody writes while it is handled.
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
    pub fn unicast(&self, skb: OwnedMessageBuf, portid: u32) -> Result {
        // SAFETY: `nfnetlink_unicast()` consumes the buffer we own; `net` is the namespace
        // of the message being handled.
        to_result(unsafe { bindings::nfnetlink_unicast(skb.into_raw(), self.raw.net, portid) })
    }

    /// `netlink_dump_start()`: answers the message with a dump made by `D`.
    ///
    /// Returns what nfnetlink expects back from the callback (`-EINTR` once the dump started).
    pub fn dump_start<D: Dump>(&self) -> Result {
        // The shim records this module as the dump's owner, so the module (and
        // `dump_callback::<D>`) stays loaded while the dump runs.
        // SAFETY: `sk`, `skb` and `nlh` are those of the message being handled (type
        // invariants), as `netlink_dump_start()` requires.
        to_result(unsafe {
            bindings::cthelper_shim_netlink_dump_start(
                self.raw.sk,
                self.skb.as_raw(),
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
/// `self.raw` is the `netlink_callback` of the running dump, which only this dump touches, and
/// whose `skb` and `nlh` (the request) are valid while it runs.
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
    #[inline]
    pub fn portid(&self) -> u32 {
        // SAFETY: By the type invariants, `cb->skb` is the request's socket buffer, valid while
        // the dump runs.
        unsafe { Request::from_raw(self.raw.skb) }.netlink_portid()
    }

    fn nlh(&self) -> &bindings::nlmsghdr {
        // SAFETY: By the type invariants, `cb->nlh` is the request's header, valid while the
        // dump runs.
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
    fn dump(skb: &mut MessageBuf, state: &mut DumpState<'_>) -> Result<u32>;
}

/// # Safety
///
/// Called by netlink as `netlink_dump_control.dump`, with the buffer to fill and the dump's state.
unsafe extern "C" fn dump_callback<D: Dump>(
    skb: *mut bindings::sk_buff,
    cb: *mut bindings::netlink_callback,
) -> c_int {
    from_result(|| {
        // SAFETY: netlink passes the socket buffer being filled, which is ours until we return.
        let skb = unsafe { MessageBuf::from_raw(skb) };
        // SAFETY: netlink passes this dump's callback state, which only this dump touches.
        let raw = unsafe { &mut *cb };
        // INVARIANT: `raw` is the running dump's state.
        let mut state = DumpState { raw };
        let len = D::dump(skb, &mut state)?;
        // `skb->len` of a netlink buffer is far below `INT_MAX`.
        Ok(c_int::try_from(len).unwrap_or(c_int::MAX))
    })
}

/// A message callback of subsystem `ID` with an attribute table of `N` entries.
pub trait Handler<const ID: u8, const N: usize> {
    /// Handles one message; runs with the subsystem mutex held.
    fn call(skb: &Request, info: &Info<'_>, tb: &Attrs<'_, N>, lock: &mut SubsysLock<ID>)
        -> Result;
}

/// # Safety
///
/// Called by nfnetlink as `nfnl_callback.call` of an `NFNL_CB_MUTEX` entry of subsystem `ID`
/// whose policy has `N` entries.
unsafe extern "C" fn mutex_callback<const ID: u8, const N: usize, H: Handler<ID, N>>(
    skb: *mut bindings::sk_buff,
    info: *const bindings::nfnl_info,
    cda: *const *const bindings::nlattr,
) -> c_int {
    from_result(|| {
        // SAFETY: nfnetlink runs the `NFNL_CB_MUTEX` callbacks of subsystem `ID` with
        // `nfnl_lock(ID)` held, until they return; only a `Subsystem<ID>` holds this callback.
        let mut lock = unsafe { SubsysLock::<ID>::assume_held() };
        // SAFETY: nfnetlink passes the request's socket buffer, valid until we return.
        let skb = unsafe { Request::from_raw(skb) };
        // SAFETY: nfnetlink passes the message's info, valid until we return.
        let raw = unsafe { &*info };
        // INVARIANT: `raw` is the running callback's info, `skb` its request.
        let info = Info { raw, skb };
        // SAFETY: nfnetlink passes a table of `attr_count + 1 == N` entries, each null or an
        // attribute of the message validated against the callback's policy; the table is a
        // local array of `nfnetlink_rcv_msg()` (or of the batch path), and neither it nor the
        // message changes until we return.
        let tb = unsafe { Attrs::<N>::from_raw(cda) };
        H::call(skb, &info, tb, &mut lock)?;
        Ok(0)
    })
}

/// One entry of the callback table of subsystem `ID` (`struct nfnl_callback`).
///
/// # Invariants
///
/// Either unused (`NFNL_CB_UNSPEC`, no callback), or an `NFNL_CB_MUTEX` entry whose `call` is
/// `mutex_callback::<ID, N, H>` and whose `policy` has `N == attr_count + 1` entries; such an
/// entry only ever sits in the table of [`Subsystem<ID>`].
#[repr(transparent)]
pub struct Callback<const ID: u8>(bindings::nfnl_callback);

// SAFETY: A callback entry is never written after it is built; C code only reads it.
unsafe impl<const ID: u8> Sync for Callback<ID> {}

impl<const ID: u8> Callback<ID> {
    /// An unused message type: nfnetlink answers it with `-EINVAL` (`NFNL_CB_UNSPEC`).
    pub const fn unspec() -> Self {
        // SAFETY: All-zero is `NFNL_CB_UNSPEC` with no callback and no policy.
        // INVARIANT: An unused entry.
        Self(unsafe { core::mem::zeroed() })
    }

    /// A callback run with the subsystem mutex held (`NFNL_CB_MUTEX`), whose top-level
    /// attributes are validated against `policy`.
    pub const fn mutex<const N: usize, H: Handler<ID, N>>(policy: &'static Policy<N>) -> Self {
        // INVARIANT: The callback, policy and count agree on `N`; the entry can only be put in
        // a `Callbacks<ID, _>`, which only a `Subsystem<ID>` takes.
        Self(bindings::nfnl_callback {
            call: Some(mutex_callback::<ID, N, H>),
            policy: policy.as_raw(),
            type_: bindings::NFNL_CB_MUTEX,
            attr_count: (N - 1) as u16,
        })
    }
}

/// The callback table of subsystem `ID`, one entry per message type below `M`.
///
/// Built like a C array with designated initialisers: [`Callbacks::empty`] leaves every message
/// type unused and [`Callbacks::with`] sets the entry of one, named by its constant.
///
/// # Invariants
///
/// Every entry is a [`Callback<ID>`], so each satisfies its invariants.
#[repr(transparent)]
pub struct Callbacks<const ID: u8, const M: usize>([Callback<ID>; M]);

impl<const ID: u8, const M: usize> Callbacks<ID, M> {
    /// A table with no message type handled.
    pub const fn empty() -> Self {
        Self([const { Callback::unspec() }; M])
    }

    /// The same table with `callback` for message type `msg` (`[msg] = callback` in C).
    pub const fn with(mut self, msg: u8, callback: Callback<ID>) -> Self {
        assert!(
            (msg as usize) < M,
            "message type outside the callback table"
        );
        self.0[msg as usize] = callback;
        self
    }

    /// The entries, indexed by message type.
    pub const fn as_slice(&'static self) -> &'static [Callback<ID>] {
        &self.0
    }
}

/// The nfnetlink subsystem `ID` (`struct nfnetlink_subsystem`).
///
/// # Invariants
///
/// `subsys_id == ID < NFNL_SUBSYS_COUNT`, and `cb` points to `cb_count` [`Callback<ID>`]
/// entries that live forever.
#[repr(transparent)]
pub struct Subsystem<const ID: u8>(bindings::nfnetlink_subsystem);

// SAFETY: A subsystem description is never written after it is built; C code only reads it.
unsafe impl<const ID: u8> Sync for Subsystem<ID> {}

impl<const ID: u8> Subsystem<ID> {
    /// Describes subsystem `ID`, handling message type `i` with `callbacks[i]`.
    pub const fn new(name: &'static CStr, callbacks: &'static [Callback<ID>]) -> Self {
        let () = SubsysId::<ID>::VALID;
        assert!(
            callbacks.len() <= u8::MAX as usize,
            "too many message types"
        );
        // SAFETY: Zero is valid for the remaining fields: no owner, no batch operations.
        let mut raw: bindings::nfnetlink_subsystem = unsafe { core::mem::zeroed() };
        raw.name = name.as_char_ptr();
        raw.subsys_id = ID;
        raw.cb_count = callbacks.len() as u8;
        raw.cb = callbacks.as_ptr().cast();
        // INVARIANT: The id is `ID`, checked above; the callbacks are static `Callback<ID>`s.
        Self(raw)
    }
}

/// A registered nfnetlink subsystem; dropping it unregisters it.
///
/// # Invariants
///
/// `self.subsys` is registered with nfnetlink.
pub struct Registration<const ID: u8> {
    subsys: &'static Subsystem<ID>,
}

impl<const ID: u8> Registration<ID> {
    /// `nfnetlink_subsys_register()`; `EBUSY` if another module has subsystem `ID`.
    pub fn register(subsys: &'static Subsystem<ID>) -> Result<Self> {
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

impl<const ID: u8> Drop for Registration<ID> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the subsystem is registered. Once this returns no
        // callback of it runs or will run (dumps hold a module reference of their own).
        unsafe { bindings::nfnetlink_subsys_unregister(&self.subsys.0) };
    }
}
