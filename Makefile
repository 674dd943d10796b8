# SPDX-License-Identifier: GPL-2.0
#
#   make                     build nfnl_cthelper.ko against $(KDIR)
#   make KDIR=/path/to/6.12  ... against any Rust-enabled 6.12 build tree
#   make CLIPPY=1            ... with clippy as the Rust compiler driver
#   make modules_install     install it under $(INSTALL_MOD_PATH)/lib/modules
#   make check               the test command: host checks, then tests/*.sh in a guest
#   make demo                boot a guest and show the module at work
#   make bench               speed and memory against the C module (scripts/bench)
#   make clean

# Without KDIR, the cached test kernel (built first if missing).  Not for
# `make bench`, which builds and boots a kernel of its own, nor for `make
# check` and `make demo`, whose scripts build it themselves: check's
# timing table shows the build as a phase of its own, which a build while
# make reads this file would hide.
ifeq ($(origin KDIR),undefined)
ifneq ($(if $(MAKECMDGOALS),$(filter-out bench check demo,$(MAKECMDGOALS)),all),)
KDIR := $(shell $(CURDIR)/scripts/build-kernel)
ifeq ($(KDIR),)
$(error scripts/build-kernel failed)
endif
endif
endif

# make -C $(KDIR) runs rustc from the kernel tree, where this repository's
# rust-toolchain.toml is not seen.
export RUSTUP_TOOLCHAIN := $(shell sed -n 's/^channel *= *"\(.*\)"/\1/p' $(CURDIR)/rust-toolchain.toml)
export PATH := $(HOME)/.cargo/bin:$(PATH)

# A tree scripts/build-kernel built with another LLVM toolchain (a flavour's
# "# nfnl: LLVM=-16") says so in nfnl-llvm: its modules need the same.
NFNL_LLVM := $(or $(shell cat $(KDIR)/nfnl-llvm 2>/dev/null),1)
KBUILD_ARGS := -C $(KDIR) M=$(CURDIR) LLVM=$(NFNL_LLVM)

all: modules

modules modules_install clean:
	$(MAKE) $(KBUILD_ARGS) $@

rustfmt:
	rustfmt --edition 2021 --check $(wildcard src/*.rs)

check:
	KDIR=$(KDIR) ./scripts/run-tests

demo:
	./scripts/demo

bench:
	./scripts/bench

.PHONY: all modules modules_install clean rustfmt check demo bench
