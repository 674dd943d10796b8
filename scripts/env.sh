# SPDX-License-Identifier: GPL-2.0
# Shared settings for the project's scripts; source it, do not run it.
#
# NFNL_CTHELPER_CACHE  where kernel sources and builds are kept
#                      (default: ~/.cache/nfnl-cthelper)
# KDIR                 a kernel build tree to use instead of the cached one

NFNL_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NFNL_CACHE=${NFNL_CTHELPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfnl-cthelper}

export PATH="$HOME/.cargo/bin:$PATH"
# `make -C $KDIR` runs rustc outside this tree, where rust-toolchain.toml is
# not seen; pin the toolchain for every child process instead.
RUSTUP_TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$NFNL_TOP/rust-toolchain.toml")
export RUSTUP_TOOLCHAIN

nfnl_die() {
	echo "error: $*" >&2
	exit 1
}

# The Debian package version of the kernel source, e.g. 6.12.117-1~deb12u1.
nfnl_kernel_version() {
	dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null ||
		nfnl_die "linux-source-6.12 is not installed: run scripts/setup"
}

# Everything that changes the built kernel goes into the cache key.
nfnl_kernel_key() {
	{
		nfnl_kernel_version
		cat "$NFNL_TOP/scripts/base.config" "$NFNL_TOP/tests/config"
		clang --version | head -n1
		rustc --version
		bindgen --version
	} | sha256sum | cut -c1-12
}

nfnl_kernel_builddir() {
	echo "$NFNL_CACHE/build/$(nfnl_kernel_version)-$(nfnl_kernel_key)"
}
