// SPDX-License-Identifier: GPL-2.0

//! The decisions of the cthelper subsystem that need no kernel.
//!
//! This file is a module of the kernel crate (`src/cthelper.rs`) and, on its own, the library
//! of the host-side `cargo test` (`Cargo.toml`), so it uses `core` only. The values below are
//! UAPI or fixed by the conntrack core; `src/nfnetlink_cthelper.rs` checks them against the kernel headers
//! at build time.
//!
//! String and attribute comparisons are not here: the module calls the kernel's own
//! `nla_strcmp()` and `strncmp()` for them (`src/netlink.rs`, `src/conntrack.rs`), so that
//! padded and oddly terminated names are treated exactly as the C module treats them.

#![forbid(unsafe_code)]

/// `NF_DROP`.
pub const NF_DROP: u32 = 0;
/// `NF_ACCEPT`.
pub const NF_ACCEPT: u32 = 1;
/// `NF_QUEUE`.
pub const NF_QUEUE: u32 = 3;
/// `NF_VERDICT_QMASK`: where a queue verdict carries the queue number.
pub const NF_VERDICT_QMASK: u32 = 0xffff_0000;
/// `NF_VERDICT_QBITS`.
pub const NF_VERDICT_QBITS: u32 = 16;
/// `NF_VERDICT_FLAG_QUEUE_BYPASS`: accept the packet if nobody listens on the queue.
pub const NF_VERDICT_FLAG_QUEUE_BYPASS: u32 = 0x0000_8000;

/// `NF_CT_HELPER_F_USERSPACE`.
pub const F_USERSPACE: u32 = 1 << 0;
/// `NF_CT_HELPER_F_CONFIGURED`.
pub const F_CONFIGURED: u32 = 1 << 1;

/// `NFCT_HELPER_STATUS_DISABLED`.
pub const STATUS_DISABLED: u32 = 0;
/// `NFCT_HELPER_STATUS_ENABLED`.
pub const STATUS_ENABLED: u32 = 1;

/// `NF_CT_MAX_EXPECT_CLASSES`.
pub const MAX_EXPECT_CLASSES: usize = 4;

/// Why a request is refused; `src/cthelper.rs` maps each to the errno upstream returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// `-EINVAL`.
    Invalid,
    /// `-EOVERFLOW`.
    Overflow,
    /// `-ENOMEM`, which upstream returns for private data larger than the conntrack has room.
    NoRoom,
}

/// `NF_QUEUE_NR(queue_num)`.
pub const fn queue_verdict(queue_num: u32) -> u32 {
    ((queue_num << NF_VERDICT_QBITS) & NF_VERDICT_QMASK) | NF_QUEUE
}

/// The verdict of the `help` callback for a helper with `flags` and `queue_num`.
///
/// A user-space helper that is not configured yet lets packets through; once configured, its
/// packets go to its queue, and are accepted if no program listens there.
pub const fn help_verdict(flags: u32, queue_num: u32) -> u32 {
    if flags & (F_USERSPACE | F_CONFIGURED) == F_USERSPACE {
        return NF_ACCEPT;
    }
    queue_verdict(queue_num) | NF_VERDICT_FLAG_QUEUE_BYPASS
}

/// The helper flags after a `NFCTH_STATUS` of `status`; unknown values change nothing.
pub const fn apply_status(flags: u32, status: u32) -> u32 {
    match status {
        STATUS_ENABLED => flags | F_CONFIGURED,
        STATUS_DISABLED => flags & !F_CONFIGURED,
        _ => flags,
    }
}

/// The number of expectation classes a `NFCTH_POLICY_SET_NUM` of `num` asks for.
pub const fn expect_classes(num: u32) -> Result<usize, Reject> {
    if num == 0 {
        return Err(Reject::Invalid);
    }
    if num as usize > MAX_EXPECT_CLASSES {
        return Err(Reject::Overflow);
    }
    Ok(num as usize)
}

/// The private data length of a new helper, given the room a conntrack has for it.
pub fn priv_data_len(size: u32, room: usize) -> Result<u16, Reject> {
    if size as usize > room {
        return Err(Reject::NoRoom);
    }
    u16::try_from(size).map_err(|_| Reject::NoRoom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfigured_userspace_helper_accepts() {
        assert_eq!(help_verdict(F_USERSPACE, 7), NF_ACCEPT);
    }

    #[test]
    fn configured_helper_queues_with_bypass() {
        let v = help_verdict(F_USERSPACE | F_CONFIGURED, 7);
        assert_eq!(v & 0xff, NF_QUEUE);
        assert_eq!(v >> 16, 7);
        assert_ne!(v & NF_VERDICT_FLAG_QUEUE_BYPASS, 0);
        assert_eq!(v, 0x0007_8003);
    }

    #[test]
    fn queue_number_keeps_sixteen_bits() {
        assert_eq!(help_verdict(F_USERSPACE | F_CONFIGURED, 65535) >> 16, 65535);
        assert_eq!(queue_verdict(65536), NF_QUEUE);
    }

    #[test]
    fn status_sets_and_clears_configured_only() {
        assert_eq!(
            apply_status(F_USERSPACE, STATUS_ENABLED),
            F_USERSPACE | F_CONFIGURED
        );
        assert_eq!(
            apply_status(F_USERSPACE | F_CONFIGURED, STATUS_DISABLED),
            F_USERSPACE
        );
        assert_eq!(apply_status(F_USERSPACE, 2), F_USERSPACE);
        assert_eq!(
            apply_status(F_USERSPACE | F_CONFIGURED, u32::MAX),
            F_USERSPACE | F_CONFIGURED
        );
    }

    #[test]
    fn class_count_bounds() {
        // Upstream commit "netfilter: nfnetlink_cthelper: fix the expect_class_max off-by-one"
        // family: 0 is invalid, 1..=4 are accepted, 5 and more overflow.
        assert_eq!(expect_classes(0), Err(Reject::Invalid));
        for n in 1..=4 {
            assert_eq!(expect_classes(n), Ok(n as usize));
        }
        assert_eq!(expect_classes(5), Err(Reject::Overflow));
        assert_eq!(expect_classes(u32::MAX), Err(Reject::Overflow));
    }

    #[test]
    fn private_data_room() {
        assert_eq!(priv_data_len(0, 32), Ok(0));
        assert_eq!(priv_data_len(32, 32), Ok(32));
        assert_eq!(priv_data_len(33, 32), Err(Reject::NoRoom));
        assert_eq!(priv_data_len(u32::MAX, 32), Err(Reject::NoRoom));
    }
}
