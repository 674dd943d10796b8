// SPDX-License-Identifier: GPL-2.0

//! Netlink attributes, attribute policies and message building.
//!
//! C header: [`include/net/netlink.h`](srctree/include/net/netlink.h)
//!
//! Attribute and string data is compared and copied by the kernel's own functions
//! (`nla_strcmp()`, `nla_strscpy()`, `nla_memcpy()`), never by a re-implementation, so that a
//! padded, unterminated or oddly sized payload is treated exactly as the C code treats it.

use crate::bindings;
use core::{marker::PhantomData, mem::size_of, ptr::NonNull};
use kernel::{
    error::{code::*, Error, Result},
    ffi::c_int,
    str::CStr,
    types::Opaque,
};

/// `to_result()` of the `kernel` crate, here so that it is inlined: without cross-crate
/// inlining (6.12 does not mark it `#[inline]`), each checked call into C, such as the ten
/// `nla_put()` calls of every helper a dump appends, paid a second call.
// TODO: use `kernel::error::to_result` once the kernel crate marks it `#[inline]`.
#[inline]
fn to_result(err: c_int) -> Result {
    if err < 0 {
        Err(Error::from_errno(err))
    } else {
        Ok(())
    }
}

/// `-EMSGSIZE`: what `nla_put()` and friends fail with when the message is full.
#[inline]
fn emsgsize() -> Error {
    Error::from_errno(-(bindings::EMSGSIZE as i32))
}

/// Size of `struct nlattr`, the header in front of every attribute payload (`NLA_HDRLEN`).
const NLA_HDRLEN: usize = size_of::<bindings::nlattr>();

/// One entry of an attribute policy (`struct nla_policy`).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct PolicyEntry(bindings::nla_policy);

impl PolicyEntry {
    const fn with_type(ty: u32, len: u16) -> Self {
        // SAFETY: an all-zero `nla_policy` is `NLA_UNSPEC` with no validation data; the union
        // holds only integers and pointers, for which zero is valid.
        let mut entry: bindings::nla_policy = unsafe { core::mem::zeroed() };
        entry.type_ = ty as u8;
        entry.len = len;
        Self(entry)
    }

    /// An attribute type with no validation (the entries of a C policy array left out).
    pub const fn unspec() -> Self {
        Self::with_type(bindings::NLA_UNSPEC, 0)
    }

    /// An `NLA_U8` attribute.
    pub const fn u8() -> Self {
        Self::with_type(bindings::NLA_U8, 0)
    }

    /// An `NLA_U16` attribute.
    pub const fn u16() -> Self {
        Self::with_type(bindings::NLA_U16, 0)
    }

    /// An `NLA_U32` attribute.
    pub const fn u32() -> Self {
        Self::with_type(bindings::NLA_U32, 0)
    }

    /// An `NLA_NUL_STRING` attribute of at most `max_len` bytes before the NUL.
    pub const fn nul_string(max_len: u16) -> Self {
        Self::with_type(bindings::NLA_NUL_STRING, max_len)
    }
}

/// The policy of a message or nest whose attribute types run from 1 to `N - 1`.
///
/// Built like a C array with designated initialisers: [`Policy::empty`] leaves every type
/// unvalidated and [`Policy::with`] sets the entry of one attribute type, named by its constant,
/// so reordering the constants cannot mis-wire the table; a type beyond the table fails the build.
///
/// # Invariants
///
/// `self.0` is an array of `N` valid `struct nla_policy` entries, which is what `nla_parse`
/// expects for a `maxtype` of `N - 1`.
#[repr(transparent)]
pub struct Policy<const N: usize>([PolicyEntry; N]);

// SAFETY: A policy is never written after it is built; C code only reads it.
unsafe impl<const N: usize> Sync for Policy<N> {}

impl<const N: usize> Policy<N> {
    /// A policy that validates no attribute type.
    pub const fn empty() -> Self {
        // INVARIANT: `N` `NLA_UNSPEC` entries.
        Self([PolicyEntry::unspec(); N])
    }

    /// The same policy with `entry` for attribute type `ty` (`[ty] = entry` in C).
    pub const fn with(mut self, ty: u32, entry: PolicyEntry) -> Self {
        assert!(
            ty != 0 && (ty as usize) < N,
            "attribute type outside the policy"
        );
        // INVARIANT: one valid entry replaces another.
        self.0[ty as usize] = entry;
        self
    }

    /// The highest attribute type this policy knows (`maxtype` of `nla_parse`).
    pub const fn max_type(&self) -> u16 {
        (N - 1) as u16
    }

    pub(crate) const fn as_raw(&self) -> *const bindings::nla_policy {
        self.0.as_ptr().cast()
    }
}

/// A netlink attribute: a `struct nlattr` header followed by its payload.
///
/// # Invariants
///
/// The header and the `nla_len - NLA_HDRLEN` payload bytes after it are readable and not
/// written for as long as the reference to it lives, and `nla_len >= NLA_HDRLEN` (both checked
/// by `nla_parse`, which is how every [`Attr`] is obtained).
#[repr(transparent)]
pub struct Attr(Opaque<bindings::nlattr>);

impl Attr {
    fn as_raw(&self) -> *mut bindings::nlattr {
        self.0.get()
    }

    /// The payload (`nla_data()`, `nla_len()` bytes).
    pub fn payload(&self) -> &[u8] {
        // SAFETY: By the type invariants, the header is readable.
        let total = unsafe { (*self.as_raw()).nla_len } as usize;
        let len = total.saturating_sub(NLA_HDRLEN);
        // SAFETY: By the type invariants, `len` payload bytes follow the header and are neither
        // freed nor written while `self` is borrowed.
        unsafe { core::slice::from_raw_parts(self.as_raw().cast::<u8>().add(NLA_HDRLEN), len) }
    }

    /// The first `N` payload bytes.
    ///
    /// `nla_parse()` rejects an `NLA_U8`, `NLA_U16` or `NLA_U32` attribute shorter than its type
    /// (`-ERANGE`) and lets a longer one through, and `nla_get_*()` then read its leading bytes:
    /// so does this. For an attribute that was not validated as such, a shorter payload is
    /// zero-padded where `nla_get_*()` would read past it.
    fn leading_bytes<const N: usize>(&self) -> [u8; N] {
        let payload = self.payload();
        // A plain load, as `nla_get_*()` is, for every attribute `nla_parse()` validated.
        match payload.first_chunk::<N>() {
            Some(bytes) => *bytes,
            None => zero_padded(payload),
        }
    }

    /// `nla_get_u8()`.
    // The getters stay out of line: each is a length check and a load, called from a dozen
    // places, where inlined copies only add text.
    #[inline(never)]
    pub fn get_u8(&self) -> u8 {
        self.leading_bytes::<1>()[0]
    }

    /// `ntohs(nla_get_be16())`.
    #[inline(never)]
    pub fn get_be16(&self) -> u16 {
        u16::from_be_bytes(self.leading_bytes())
    }

    /// `ntohl(nla_get_be32())`.
    #[inline(never)]
    pub fn get_be32(&self) -> u32 {
        u32::from_be_bytes(self.leading_bytes())
    }

    /// The payload as a C string: its bytes up to the first NUL, as `nla_data()` is read by C
    /// string functions; `None` if the payload holds no NUL (which `nla_parse()` rejects for an
    /// `NLA_NUL_STRING` attribute).
    #[inline]
    pub fn nul_string(&self) -> Option<&CStr> {
        let payload = self.payload();
        let nul = payload.iter().position(|&c| c == 0)?;
        CStr::from_bytes_with_nul(&payload[..=nul]).ok()
    }

    /// `nla_strcmp()`: compares the payload, less all its trailing NULs, with `s`; zero when
    /// they are equal.
    #[inline]
    pub fn strcmp(&self, s: &CStr) -> i32 {
        // SAFETY: By the type invariants, `self` is a valid attribute; `s` is NUL-terminated.
        unsafe { bindings::nla_strcmp(self.as_raw(), s.as_char_ptr()) }
    }

    /// `nla_strscpy()`: copies the string payload into `dst`, always NUL-terminated (for a
    /// non-empty `dst`), truncating it if needed, and zeroes the rest of `dst`.
    #[inline]
    pub fn strscpy(&self, dst: &mut [u8]) {
        // SAFETY: `self` is a valid attribute and `dst` is writable for `dst.len()` bytes, which
        // is all `nla_strscpy()` writes.
        unsafe { bindings::nla_strscpy(dst.as_mut_ptr(), self.as_raw(), dst.len()) };
    }

    /// `nla_memcpy()`: copies the payload into `dst`, zero-filling what it does not cover.
    #[inline]
    pub fn memcpy_to(&self, dst: &mut [u8]) {
        let len = i32::try_from(dst.len()).unwrap_or(i32::MAX);
        // SAFETY: `self` is a valid attribute and `dst` is writable for `len` bytes, which is
        // all `nla_memcpy()` writes.
        unsafe { bindings::nla_memcpy(dst.as_mut_ptr().cast(), self.as_raw(), len) };
    }
}

/// `payload`, shorter than `N` bytes, zero-padded to `N`: out of line, as only an attribute
/// that no policy validated can be this short.
#[cold]
#[inline(never)]
fn zero_padded<const N: usize>(payload: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = payload.len().min(N);
    out[..n].copy_from_slice(&payload[..n]);
    out
}

/// The attributes of a message or nest, indexed by type, as `nla_parse()` leaves them.
///
/// # Invariants
///
/// `N` is one more than the highest type; each entry `i` is `None` or an attribute of type `i`
/// that `nla_parse()` validated against the policy, valid (as [`Attr`] requires) for `'a`.
#[repr(transparent)]
pub struct Attrs<'a, const N: usize>([Option<&'a Attr>; N]);

impl<'a, const N: usize> Attrs<'a, N> {
    /// A table with no attribute, to be filled by [`parse_nested`].
    // INVARIANT: No entry.
    pub const EMPTY: Self = Self([None; N]);

    /// The attribute table nfnetlink passes to a callback, in place.
    ///
    /// # Safety
    ///
    /// `tb` must point to `N` entries, each null or a pointer to an attribute validated by
    /// `nla_parse()` against the callback's policy and valid for `'a`; the entries must not be
    /// written for `'b` (which `'a` outlives).
    pub(crate) unsafe fn from_raw<'b>(tb: *const *const bindings::nlattr) -> &'b Self {
        // INVARIANT: Each entry is null or a validated attribute, as the caller guarantees.
        // SAFETY: `Self` is a transparent wrapper of `[Option<&Attr>; N]`, which has the layout
        // of `[*const nlattr; N]` (`Option` of a reference to the transparent `Attr` is a
        // nullable pointer); the caller guarantees `N` entries, readable and unchanged for `'b`.
        unsafe { &*tb.cast::<Self>() }
    }

    /// The attribute of type `ty`, if present.
    pub fn get(&self, ty: u32) -> Option<&'a Attr> {
        self.0.get(ty as usize).copied().flatten()
    }
}

/// `nla_parse_nested_deprecated()`: parses the attributes nested in `attr` against `policy`
/// into `tb`, as C fills a caller's `struct nlattr *tb[]`.
///
/// Fails with the parser's error (`EINVAL`, `ERANGE`, ...); `tb` is then only partly filled and
/// not to be relied on.
pub fn parse_nested<'a, const N: usize>(
    tb: &mut Attrs<'a, N>,
    attr: &'a Attr,
    policy: &'static Policy<N>,
) -> Result {
    // The parser clears all `N` entries, then stores in an entry only an attribute of `attr`'s
    // payload that it validated against `policy`, also on every error path.
    // INVARIANT: So every entry is null or a validated attribute valid for `'a`.
    // SAFETY: `tb` holds `max_type() + 1` entries laid out as nullable `*const nlattr`; `attr`
    // and the `N`-entry `policy` are valid; each stored entry (above) is an aligned, valid
    // attribute inside `attr`, so a valid `Option<&'a Attr>`.
    let ret = unsafe {
        bindings::cthelper_shim_nla_parse_nested(
            tb.0.as_mut_ptr().cast(),
            policy.max_type().into(),
            attr.as_raw(),
            policy.as_raw(),
        )
    };
    to_result(ret)
}

/// The socket buffer of a netlink request being handled, seen read-only.
///
/// A handler reads where the request came from through it; it cannot append to the request.
/// Replies are built in a [`MessageBuf`].
///
/// # Invariants
///
/// `self.0` is a valid `struct sk_buff` holding a received netlink message, for as long as the
/// reference lives.
#[repr(transparent)]
pub struct Request(Opaque<bindings::sk_buff>);

impl Request {
    /// Creates a reference to a received request's socket buffer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct sk_buff` that netlink received, valid for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::sk_buff) -> &'a Request {
        // SAFETY: Guaranteed by the caller; `Request` is transparent over `struct sk_buff`.
        // INVARIANT: Guaranteed by the caller.
        unsafe { &*ptr.cast::<Request>() }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::sk_buff {
        self.0.get()
    }

    /// `NETLINK_CB(skb).portid`: the netlink port the message came from.
    #[inline]
    pub fn netlink_portid(&self) -> u32 {
        // SAFETY: By the type invariants, `self` is a valid socket buffer of a netlink message.
        unsafe { bindings::cthelper_shim_skb_portid(self.as_raw()) }
    }
}

/// A socket buffer that netlink messages and attributes are appended to: a dump's next part, a
/// reply, or the message conntrack is filling when it asks a helper for its private data.
///
/// It is written through `&mut` only, and an open [`Message`] or [`Nest`] borrows it mutably,
/// so whatever is appended while one is open goes inside it, and they close in order.
///
/// # Invariants
///
/// `self.0` is a valid `struct sk_buff` that only the holder of the reference writes to, for as
/// long as the reference lives.
#[repr(transparent)]
pub struct MessageBuf(Opaque<bindings::sk_buff>);

impl MessageBuf {
    /// Creates a reference to a socket buffer being filled.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct sk_buff` that the caller may write to for `'a`, and
    /// nobody else may read or write it during `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::sk_buff) -> &'a mut MessageBuf {
        // SAFETY: Guaranteed by the caller; `MessageBuf` is transparent over `struct sk_buff`.
        // INVARIANT: Guaranteed by the caller.
        unsafe { &mut *ptr.cast::<MessageBuf>() }
    }

    /// `skb->len`, in bytes.
    #[inline]
    pub fn length(&self) -> u32 {
        // SAFETY: By the type invariants, `self` is a valid socket buffer.
        unsafe { bindings::cthelper_shim_skb_len(self.0.get()) }
    }

    /// `nfnl_msg_put(skb, portid, seq, type, flags, family, NFNETLINK_V0, 0)`: starts an
    /// nfnetlink message, finished by [`Message::end`]; `EMSGSIZE` if it does not fit.
    #[inline]
    pub fn nfnl_msg_put(
        &mut self,
        portid: u32,
        seq: u32,
        msg_type: u16,
        flags: u16,
        family: u8,
    ) -> Result<Message<'_>> {
        // SAFETY: `self` is a valid socket buffer we may write to.
        let nlh = unsafe {
            bindings::cthelper_shim_nfnl_msg_put(
                self.0.get(),
                portid,
                seq,
                msg_type.into(),
                flags.into(),
                family,
                bindings::NFNETLINK_V0 as u8,
                0,
            )
        };
        let nlh = NonNull::new(nlh).ok_or_else(emsgsize)?;
        // INVARIANT: `nfnl_msg_put()` just returned `nlh` for this buffer, which the message
        // borrows mutably from now on.
        Ok(Message { skb: self, nlh })
    }
}

mod sealed {
    /// Where [`super::Attributes`] appends; not reachable outside this module.
    pub trait Sink {
        fn skb(&mut self) -> *mut crate::bindings::sk_buff;
    }
}

/// Appending attributes: to a [`MessageBuf`] (inside whatever its owner opened), an open
/// [`Message`] or an open [`Nest`]. Each fails with `EMSGSIZE` when the buffer is full.
pub trait Attributes: sealed::Sink {
    /// `nla_put()`: appends an attribute of type `ty` with payload `data`.
    fn put(&mut self, ty: u16, data: &[u8]) -> Result {
        let len = i32::try_from(data.len()).map_err(|_| EINVAL)?;
        // SAFETY: `skb()` is a valid socket buffer we may write to (invariants of the
        // implementing types) and `data` is readable for `len` bytes.
        to_result(unsafe { bindings::nla_put(self.skb(), ty.into(), len, data.as_ptr().cast()) })
    }

    /// `nla_put_u8()`.
    fn put_u8(&mut self, ty: u16, value: u8) -> Result {
        self.put(ty, &[value])
    }

    /// `nla_put_be16(skb, ty, htons(value))`.
    fn put_be16(&mut self, ty: u16, value: u16) -> Result {
        self.put(ty, &value.to_be_bytes())
    }

    /// `nla_put_be32(skb, ty, htonl(value))`.
    fn put_be32(&mut self, ty: u16, value: u32) -> Result {
        self.put(ty, &value.to_be_bytes())
    }

    /// `nla_put_string()`: the string and its NUL.
    fn put_string(&mut self, ty: u16, s: &CStr) -> Result {
        self.put(ty, s.as_bytes_with_nul())
    }

    /// `nla_nest_start()`: opens a nest of type `ty`, closed by [`Nest::end`].
    fn nest_start(&mut self, ty: u16) -> Result<Nest<'_>> {
        let skb = self.skb();
        // SAFETY: `skb` is a valid socket buffer we may write to.
        let start = unsafe { bindings::cthelper_shim_nla_nest_start(skb, ty.into()) };
        let start = NonNull::new(start).ok_or_else(emsgsize)?;
        // INVARIANT: `nla_nest_start()` just returned `start` for `skb`, which the nest borrows
        // (through `self`) mutably from now on.
        Ok(Nest {
            skb,
            start,
            _parent: PhantomData,
        })
    }
}

impl sealed::Sink for MessageBuf {
    fn skb(&mut self) -> *mut bindings::sk_buff {
        self.0.get()
    }
}
impl Attributes for MessageBuf {}

/// An open nest in a socket buffer.
///
/// # Invariants
///
/// `start` was returned by `nla_nest_start()` on `skb`, a valid socket buffer that the nest's
/// parent (a [`MessageBuf`], [`Message`] or [`Nest`]) lends it mutably for `'a`: while the nest
/// is open, the buffer is only appended to through it.
pub struct Nest<'a> {
    skb: *mut bindings::sk_buff,
    start: NonNull<bindings::nlattr>,
    _parent: PhantomData<&'a mut MessageBuf>,
}

impl Nest<'_> {
    /// `nla_nest_end()`: fixes up the nest's length.
    #[inline]
    pub fn end(self) {
        // SAFETY: By the type invariants, `start` is a nest header in this buffer, and all
        // that follows it was appended inside the nest.
        unsafe { bindings::cthelper_shim_nla_nest_end(self.skb, self.start.as_ptr()) };
    }
}

impl sealed::Sink for Nest<'_> {
    fn skb(&mut self) -> *mut bindings::sk_buff {
        self.skb
    }
}
impl Attributes for Nest<'_> {}

/// A netlink message being written to a socket buffer.
///
/// Dropping it without calling [`Message::end`] cancels it (`nlmsg_cancel()`): the socket
/// buffer is trimmed back to where the message started.
///
/// # Invariants
///
/// `nlh` was returned by `nfnl_msg_put()` on `skb`, which the message borrows mutably: while it
/// is open the buffer is only appended to through it.
pub struct Message<'a> {
    skb: &'a mut MessageBuf,
    nlh: NonNull<bindings::nlmsghdr>,
}

impl Message<'_> {
    /// `nlmsg_end()`: fixes up the message's length.
    #[inline]
    pub fn end(self) {
        // SAFETY: By the type invariants, `nlh` is a message header in this buffer, and all
        // that follows it belongs to the message.
        unsafe { bindings::cthelper_shim_nlmsg_end(self.skb.0.get(), self.nlh.as_ptr()) };
        core::mem::forget(self);
    }
}

impl sealed::Sink for Message<'_> {
    fn skb(&mut self) -> *mut bindings::sk_buff {
        self.skb.0.get()
    }
}
impl Attributes for Message<'_> {}

impl Drop for Message<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `nlh` is a message header in this buffer, and all
        // that was written since belongs to the message.
        unsafe { bindings::cthelper_shim_nlmsg_cancel(self.skb.0.get(), self.nlh.as_ptr()) };
    }
}

/// A socket buffer this module allocated for a netlink reply (`nlmsg_new()`).
///
/// # Invariants
///
/// `self.0` points to a socket buffer this object owns.
pub struct OwnedMessageBuf(NonNull<bindings::sk_buff>, PhantomData<bindings::sk_buff>);

impl OwnedMessageBuf {
    /// `nlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL)`; `ENOMEM` if it cannot be allocated.
    #[inline]
    pub fn new_default() -> Result<Self> {
        // SAFETY: FFI call with no preconditions.
        let skb = unsafe { bindings::cthelper_shim_nlmsg_new() };
        // INVARIANT: A buffer `nlmsg_new()` just allocated is ours.
        Ok(Self(NonNull::new(skb).ok_or(ENOMEM)?, PhantomData))
    }

    /// Gives up ownership, for a function that consumes the buffer.
    pub(crate) fn into_raw(self) -> *mut bindings::sk_buff {
        let ptr = self.0.as_ptr();
        core::mem::forget(self);
        ptr
    }
}

impl core::ops::Deref for OwnedMessageBuf {
    type Target = MessageBuf;

    fn deref(&self) -> &MessageBuf {
        // SAFETY: By the type invariants, `self.0` is a socket buffer we own, so nobody else
        // touches it while `self` is borrowed; the reference is shared, as `self` is.
        unsafe { &*self.0.as_ptr().cast::<MessageBuf>() }
    }
}

impl core::ops::DerefMut for OwnedMessageBuf {
    fn deref_mut(&mut self) -> &mut MessageBuf {
        // SAFETY: By the type invariants, `self.0` is a socket buffer we own, so nobody else
        // touches it while `self` is borrowed mutably.
        unsafe { MessageBuf::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for OwnedMessageBuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariants, we own the buffer.
        unsafe { bindings::cthelper_shim_kfree_skb(self.0.as_ptr()) };
    }
}
