// SPDX-License-Identifier: GPL-2.0

//! Netlink attributes, attribute policies and message building.
//!
//! C header: [`include/net/netlink.h`](srctree/include/net/netlink.h)

use crate::bindings;
use core::{marker::PhantomData, mem::size_of, ptr::NonNull};
use kernel::{
    error::{code::*, to_result, Error, Result},
    types::Opaque,
};

/// `-EMSGSIZE`: what `nla_put()` and friends fail with when the message is full.
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

    /// An `NLA_NUL_STRING` attribute of at most `max_len` characters before the NUL.
    pub const fn nul_string(max_len: u16) -> Self {
        Self::with_type(bindings::NLA_NUL_STRING, max_len)
    }
}

/// The policy of a message or nest whose attribute types run from 1 to `N - 1`.
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
    /// Builds a policy from its entries, indexed by attribute type (entry 0 is unused).
    pub const fn new(entries: [PolicyEntry; N]) -> Self {
        Self(entries)
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
/// The header and the `nla_len - NLA_HDRLEN` payload bytes after it are readable for as long as
/// the reference to it lives, and `nla_len >= NLA_HDRLEN` (both checked by `nla_parse`, which
/// is how every [`Attr`] is obtained).
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
        // SAFETY: By the type invariants, `len` payload bytes follow the header and stay valid
        // while `self` is borrowed.
        unsafe { core::slice::from_raw_parts(self.as_raw().cast::<u8>().add(NLA_HDRLEN), len) }
    }

    /// The first `N` payload bytes, zero-padded if the payload is shorter.
    ///
    /// The policy of every integer attribute guarantees its length, so the padding is never
    /// used; it only keeps this function total.
    fn leading_bytes<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        let payload = self.payload();
        let n = payload.len().min(N);
        out[..n].copy_from_slice(&payload[..n]);
        out
    }

    /// `nla_get_u8()`.
    pub fn get_u8(&self) -> u8 {
        self.leading_bytes::<1>()[0]
    }

    /// `ntohs(nla_get_be16())`.
    pub fn get_be16(&self) -> u16 {
        u16::from_be_bytes(self.leading_bytes())
    }

    /// `ntohl(nla_get_be32())`.
    pub fn get_be32(&self) -> u32 {
        u32::from_be_bytes(self.leading_bytes())
    }

    /// `nla_strscpy()`: copies the string payload into `dst`, always NUL-terminated, truncating
    /// it if needed, and zeroes the rest of `dst`.
    pub fn strscpy(&self, dst: &mut [u8]) {
        // SAFETY: `self` is a valid attribute and `dst` is writable for `dst.len()` bytes, which
        // is all `nla_strscpy()` writes.
        unsafe { bindings::nla_strscpy(dst.as_mut_ptr(), self.as_raw(), dst.len()) };
    }

    /// `nla_memcpy()`: copies the payload into `dst`, zero-filling what it does not cover.
    pub fn memcpy_to(&self, dst: &mut [u8]) {
        let len = i32::try_from(dst.len()).unwrap_or(i32::MAX);
        // SAFETY: `self` is a valid attribute and `dst` is writable for `len` bytes, which is
        // all `nla_memcpy()` writes.
        unsafe { bindings::nla_memcpy(dst.as_mut_ptr().cast(), self.as_raw(), len) };
    }
}

/// The attributes of a message or nest, indexed by type, as `nla_parse()` leaves them.
///
/// `N` is one more than the highest type. Entry `i` is `None` when type `i` was not present.
#[repr(transparent)]
pub struct Attrs<'a, const N: usize>([Option<&'a Attr>; N]);

impl<'a, const N: usize> Attrs<'a, N> {
    /// Wraps the attribute table nfnetlink passes to a callback.
    ///
    /// # Safety
    ///
    /// `tb` must point to `N` entries, each null or a pointer to an attribute validated by
    /// `nla_parse()` and valid for `'a`.
    pub(crate) unsafe fn from_raw(tb: *const *const bindings::nlattr) -> Self {
        let mut attrs = [None; N];
        for (i, slot) in attrs.iter_mut().enumerate() {
            // SAFETY: The caller guarantees `N` readable entries.
            let p = unsafe { *tb.add(i) };
            // SAFETY: The caller guarantees that a non-null entry is a valid attribute for
            // `'a`; `Attr` is a transparent wrapper of `struct nlattr`.
            *slot = unsafe { p.cast::<Attr>().as_ref() };
        }
        Self(attrs)
    }

    /// The attribute of type `ty`, if present.
    pub fn get(&self, ty: u32) -> Option<&'a Attr> {
        self.0.get(ty as usize).copied().flatten()
    }
}

/// `nla_parse_nested_deprecated()`: parses the attributes nested in `attr` against `policy`.
pub fn parse_nested<'a, const N: usize>(
    attr: &'a Attr,
    policy: &'static Policy<N>,
) -> Result<Attrs<'a, N>> {
    let mut tb: [Option<&'a Attr>; N] = [None; N];
    // SAFETY: `tb` has room for `max_type() + 1` entries of the layout of a nullable `*const
    // nlattr` (`Option<&Attr>`); `attr` and the `N`-entry `policy` are valid. Parsed entries
    // point into `attr`'s payload, so they live as long as `attr`.
    let ret = unsafe {
        bindings::cthelper_shim_nla_parse_nested(
            tb.as_mut_ptr().cast(),
            policy.max_type().into(),
            attr.as_raw(),
            policy.as_raw(),
        )
    };
    to_result(ret)?;
    Ok(Attrs(tb))
}

/// A socket buffer (`struct sk_buff`) that netlink messages are read from or written to.
///
/// # Invariants
///
/// `self.0` is a valid `struct sk_buff` for as long as the reference lives.
#[repr(transparent)]
pub struct SkBuff(Opaque<bindings::sk_buff>);

impl SkBuff {
    /// Creates a reference to a socket buffer from a pointer C code passed in.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct sk_buff` that the caller may write to for `'a`, and
    /// no other Rust reference to it may exist during `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::sk_buff) -> &'a SkBuff {
        // SAFETY: Guaranteed by the caller; `SkBuff` is transparent over `struct sk_buff`.
        unsafe { &*ptr.cast::<SkBuff>() }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::sk_buff {
        self.0.get()
    }

    /// `skb->len`.
    pub fn length(&self) -> u32 {
        // SAFETY: By the type invariants, `self` is a valid socket buffer.
        unsafe { bindings::cthelper_shim_skb_len(self.as_raw()) }
    }

    /// `NETLINK_CB(skb).portid`: the netlink port the message came from.
    pub fn netlink_portid(&self) -> u32 {
        // SAFETY: By the type invariants, `self` is a valid socket buffer.
        unsafe { bindings::cthelper_shim_skb_portid(self.as_raw()) }
    }

    /// `nla_put()`: appends an attribute; fails with `EMSGSIZE` when it does not fit.
    pub fn put(&self, ty: u16, data: &[u8]) -> Result {
        let len = i32::try_from(data.len()).map_err(|_| EINVAL)?;
        // SAFETY: `self` is a valid socket buffer and `data` is readable for `len` bytes.
        to_result(unsafe { bindings::nla_put(self.as_raw(), ty.into(), len, data.as_ptr().cast()) })
    }

    /// `nla_put_u8()`.
    pub fn put_u8(&self, ty: u16, value: u8) -> Result {
        self.put(ty, &[value])
    }

    /// `nla_put_be16(skb, ty, htons(value))`.
    pub fn put_be16(&self, ty: u16, value: u16) -> Result {
        self.put(ty, &value.to_be_bytes())
    }

    /// `nla_put_be32(skb, ty, htonl(value))`.
    pub fn put_be32(&self, ty: u16, value: u32) -> Result {
        self.put(ty, &value.to_be_bytes())
    }

    /// `nla_put_string()`: the bytes of `s` up to its first NUL (or all of them), plus a NUL.
    pub fn put_string(&self, ty: u16, s: &[u8]) -> Result {
        let len = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        // One byte longer than the longest string this module puts (a helper or policy name).
        let mut buf = [0u8; 32];
        if len >= buf.len() {
            return Err(emsgsize());
        }
        buf[..len].copy_from_slice(&s[..len]);
        self.put(ty, &buf[..=len])
    }

    /// `nla_nest_start()`: opens a nest, closed by [`Nest::end`].
    pub fn nest_start(&self, ty: u16) -> Result<Nest<'_>> {
        // SAFETY: `self` is a valid socket buffer.
        let start = unsafe { bindings::cthelper_shim_nla_nest_start(self.as_raw(), ty.into()) };
        let start = NonNull::new(start).ok_or_else(emsgsize)?;
        Ok(Nest { skb: self, start })
    }

    /// `nfnl_msg_put(skb, portid, seq, type, flags, family, NFNETLINK_V0, 0)`: starts an
    /// nfnetlink message, finished by [`Message::end`].
    pub fn nfnl_msg_put(
        &self,
        portid: u32,
        seq: u32,
        msg_type: u16,
        flags: u16,
        family: u8,
    ) -> Result<Message<'_>> {
        // SAFETY: `self` is a valid socket buffer.
        let nlh = unsafe {
            bindings::cthelper_shim_nfnl_msg_put(
                self.as_raw(),
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
        Ok(Message { skb: self, nlh })
    }
}

/// An open nest in a socket buffer.
pub struct Nest<'a> {
    skb: &'a SkBuff,
    start: NonNull<bindings::nlattr>,
}

impl Nest<'_> {
    /// `nla_nest_end()`: fixes up the nest's length.
    pub fn end(self) {
        // SAFETY: `start` was returned by `nla_nest_start()` on this socket buffer.
        unsafe { bindings::cthelper_shim_nla_nest_end(self.skb.as_raw(), self.start.as_ptr()) };
    }
}

/// A netlink message being written to a socket buffer.
///
/// Dropping it without calling [`Message::end`] cancels it (`nlmsg_cancel()`): the socket
/// buffer is trimmed back to where the message started.
pub struct Message<'a> {
    skb: &'a SkBuff,
    nlh: NonNull<bindings::nlmsghdr>,
}

impl Message<'_> {
    /// `nlmsg_end()`: fixes up the message's length.
    pub fn end(self) {
        // SAFETY: `nlh` was returned by `nfnl_msg_put()` on this socket buffer.
        unsafe { bindings::cthelper_shim_nlmsg_end(self.skb.as_raw(), self.nlh.as_ptr()) };
        core::mem::forget(self);
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        // SAFETY: `nlh` was returned by `nfnl_msg_put()` on this socket buffer, and nothing
        // before it was written since.
        unsafe { bindings::cthelper_shim_nlmsg_cancel(self.skb.as_raw(), self.nlh.as_ptr()) };
    }
}

/// A socket buffer this module allocated for a netlink reply (`nlmsg_new()`).
///
/// # Invariants
///
/// `self.0` points to a socket buffer this object owns.
pub struct OwnedSkBuff(NonNull<bindings::sk_buff>, PhantomData<bindings::sk_buff>);

impl OwnedSkBuff {
    /// `nlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL)`.
    pub fn new_default() -> Result<Self> {
        // SAFETY: FFI call with no preconditions.
        let skb = unsafe { bindings::cthelper_shim_nlmsg_new() };
        Ok(Self(NonNull::new(skb).ok_or(ENOMEM)?, PhantomData))
    }

    /// Gives up ownership, for a function that consumes the buffer.
    pub(crate) fn into_raw(self) -> *mut bindings::sk_buff {
        let ptr = self.0.as_ptr();
        core::mem::forget(self);
        ptr
    }
}

impl core::ops::Deref for OwnedSkBuff {
    type Target = SkBuff;

    fn deref(&self) -> &SkBuff {
        // SAFETY: By the type invariants, `self.0` is a socket buffer we own, so no other
        // reference to it exists.
        unsafe { SkBuff::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for OwnedSkBuff {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, we own the buffer.
        unsafe { bindings::cthelper_shim_kfree_skb(self.0.as_ptr()) };
    }
}
