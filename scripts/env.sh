# SPDX-License-Identifier: GPL-2.0
# Shared settings for the project's scripts; source it, do not run it.
#
# NFNL_CTHELPER_CACHE  where kernel sources and builds are kept
#                      (default: ~/.cache/nfnl-cthelper)
# KDIR                 a kernel build tree to use instead of the cached one
# NFNL_KERNEL_FLAVOUR  which test kernel scripts/build-kernel builds and
#                      scripts/vm boots: "fast" (the default, what `make
#                      check` boots: scripts/fast.config, no KASAN, lockdep
#                      or kmemleak), "debug" (KASAN, lockdep, kmemleak, as
#                      tests/config asks: scripts/hardening-long) or NAME,
#                      for which the fragment scripts/NAME.config is applied
#                      after the others and wins over them ("kcsan":
#                      scripts/kcsan.config).  A new flavour is just a new
#                      fragment file.

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

# nfnl_guest_sees DIR WHAT: dies unless the guest sees DIR as the host
# does.  virtme-ng's guest init mounts empty file systems over /var/tmp,
# /var/log and /run (virtme-init): a kernel build tree there (the
# cache's, or KDIR) is gone in the guest, and with it the C module,
# nf_conntrack_ftp and the selftests' source, so that most tests fail for
# that alone (seen with NFNL_CTHELPER_CACHE under /var/tmp).
nfnl_guest_sees() {
	local dir
	dir=$(realpath -m "$1")
	case $dir/ in
	/var/tmp/* | /var/log/* | /run/*)
		nfnl_die "$2 $1 is under a directory the guest mounts empty (/var/tmp, /var/log, /run): choose another" ;;
	esac
}

# The Debian package version of the kernel source, e.g. 6.12.117-1~deb12u1.
nfnl_kernel_version() {
	dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null ||
		nfnl_die "linux-source-6.12 is not installed: run scripts/setup"
}

NFNL_FLAVOUR=${NFNL_KERNEL_FLAVOUR:-fast}
case $NFNL_FLAVOUR in
debug) ;;
*[!a-z0-9_-]* | -*) nfnl_die "NFNL_KERNEL_FLAVOUR=$NFNL_FLAVOUR: not a flavour name" ;;
*)
	[ -f "$NFNL_TOP/scripts/$NFNL_FLAVOUR.config" ] ||
		nfnl_die "NFNL_KERNEL_FLAVOUR=$NFNL_FLAVOUR: no scripts/$NFNL_FLAVOUR.config" ;;
esac

# The configuration fragments, in the order they are applied: for the same
# option, a later fragment wins over an earlier one.
NFNL_FRAGMENTS=("$NFNL_TOP/scripts/base.config" "$NFNL_TOP/tests/config")
[ "$NFNL_FLAVOUR" = debug ] || NFNL_FRAGMENTS+=("$NFNL_TOP/scripts/$NFNL_FLAVOUR.config")

# Kbuild's LLVM= for the kernel and its modules: 1 (clang, ld.lld, ... from
# PATH), unless the flavour's fragment names another toolchain on a line
# "# nfnl: LLVM=-16" (clang-16, ld.lld-16, ...).
NFNL_LLVM=1
if [ "$NFNL_FLAVOUR" != debug ]; then
	NFNL_LLVM=$(sed -n 's/^# nfnl: LLVM=\(.*\)$/\1/p' "$NFNL_TOP/scripts/$NFNL_FLAVOUR.config" | tail -n 1)
	NFNL_LLVM=${NFNL_LLVM:-1}
fi

# The clang that LLVM=$NFNL_LLVM means.
nfnl_clang() {
	case $NFNL_LLVM in
	1) echo clang ;;
	-*) echo "clang$NFNL_LLVM" ;;
	*/) echo "${NFNL_LLVM}clang" ;;
	*) nfnl_die "LLVM=$NFNL_LLVM: not a toolchain this script knows" ;;
	esac
}

# Everything that changes the built kernel goes into the cache key.  The
# debug flavour (base.config and tests/config, no fragment of its own; the
# default until the fast flavour) hashes exactly what it always has, so
# that its existing builds stay valid; every other flavour adds its name
# and fragment.
nfnl_kernel_key() {
	{
		nfnl_kernel_version
		cat "$NFNL_TOP/scripts/base.config" "$NFNL_TOP/tests/config"
		if [ "$NFNL_FLAVOUR" != debug ]; then
			echo "flavour $NFNL_FLAVOUR"
			cat "$NFNL_TOP/scripts/$NFNL_FLAVOUR.config"
			[ "$NFNL_LLVM" = 1 ] || "$(nfnl_clang)" --version | head -n1
		fi
		clang --version | head -n1
		rustc --version
		bindgen --version
	} | sha256sum | cut -c1-12
}

# build/VERSION-KEY for the debug flavour, build/VERSION-FLAVOUR-KEY else.
nfnl_kernel_builddir() {
	local flavour=
	[ "$NFNL_FLAVOUR" = debug ] || flavour=$NFNL_FLAVOUR-
	echo "$NFNL_CACHE/build/$(nfnl_kernel_version)-$flavour$(nfnl_kernel_key)"
}
