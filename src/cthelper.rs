// SPDX-License-Identifier: GPL-2.0

//! nfnl_cthelper: user-space connection tracking helpers.
//!
//! The Rust version of `net/netfilter/nfnetlink_cthelper.c`: the nfnetlink `cthelper`
//! subsystem, with which programs such as conntrackd create conntrack helpers whose packets are
//! handed to user space over NFQUEUE.
//!
//! The crate is split as the kernel's Rust drivers are: the abstraction modules (`netlink`,
//! `nfnetlink`, `conntrack`, over the generated `bindings`) hold every `unsafe` block, each with
//! its safety argument; the subsystem itself (`nfnetlink_cthelper`, function for function the C
//! file) and the pure rules (`rules`) are safe Rust, which the compiler enforces: unsafe code is
//! denied in this crate except in the abstraction modules below.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod bindings;
#[allow(unsafe_code)]
pub mod conntrack;
#[allow(unsafe_code)]
pub mod netlink;
#[allow(unsafe_code)]
pub mod nfnetlink;
pub mod nfnetlink_cthelper;
pub mod rules;

use kernel::prelude::*;
use nfnetlink_cthelper::NfnlCthelperModule;

module! {
    type: NfnlCthelperModule,
    name: "nfnl_cthelper",
    author: "Pablo Neira Ayuso <pablo@netfilter.org>",
    description: "nfnl_cthelper: User-space connection tracking helpers",
    license: "GPL",
    alias: ["nfnetlink-subsys-9"],
}
