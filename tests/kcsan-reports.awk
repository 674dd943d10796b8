# SPDX-License-Identifier: GPL-2.0
# KCSAN reports in a kernel log: raw dmesg in the guest, or a host log where
# the guest's lines carry "# " prefixes (run-guest, hardening-long).
#
#   awk -f tests/kcsan-reports.awk [-v mode=summary|print|rest] [-v only=RE] LOG
#
# A report runs from its "BUG: KCSAN: " line to the next line of '='s.  Its
# class comes from the stacks of its racing accesses only, and of an access
# made in an interrupt or a softirq only the frames down to its entry
# (asm_sysvec_*, asm_common_interrupt, asm_spurious_interrupt,
# __do_softirq, handle_softirqs): below it is the code the interrupt
# happened to stop, or the local_bh_enable() that ran pending softirqs,
# which took no part in the race, and neither did the locks the report
# lists as held.  It is ours when those frames
# name nfnl_cthelper.ko: a stack frame tagged
# [nfnl_cthelper], a C shim (cthelper_shim_*) or a Rust symbol of the crate
# (v0-mangled, "8cthelper"); cmod when it names the upstream C module
# ([nfnetlink_cthelper]; its functions are called nfnl_cthelper_* too,
# hence the tags); netfilter when it names neither but netfilter code
# (nf_*, nfqnl_*, ctnetlink_*, nfnetlink_*: a race on helper state read by
# the conntrack core whose writer was not instrumented shows there); other
# otherwise.  Lines "nfnl-cthelper-phase: TEXT" (tests write them to
# /dev/kmsg) name the phase the following reports belong to; only=RE keeps
# the reports of the phases matching RE.
#
# mode=summary (default): "kcsan reports=N ours=N cmod=N netfilter=N other=N"
# mode=print: each report, headed by "--- KCSAN report K: CLASS" and its
#   phase line, ended by its line of '='s: a log this script reads again
# mode=rest: the log without the reports (for the other splat checks)

function strip(s) {
	sub(/\r$/, "", s)
	sub(/^(# )+/, "", s)
	sub(/^\[ *[0-9]+\.[0-9]+\] /, "", s)
	return s
}

function classify(text) {
	if (text ~ /\[nfnl_cthelper\]|cthelper_shim_|_R[A-Za-z0-9_]*8cthelper/)
		return "ours"
	if (text ~ /\[nfnetlink_cthelper\]/)
		return "cmod"
	if (text ~ /(^|[^A-Za-z0-9_])(nf_|__nf_|nfqnl_|ctnetlink_|nfnetlink_|nfnl_)/)
		return "netfilter"
	return "other"
}

function flush(   cls) {
	if (!inrep)
		return
	inrep = 0
	if (only != "" && phase !~ only)
		return
	cls = classify(racing)
	n++
	count[cls]++
	if (mode == "print")
		printf "--- KCSAN report %d: %s\nnfnl-cthelper-phase: %s\n%s%s\n", n, cls,
			phase == "" ? "-" : phase, body, "=================================================================="
}

BEGIN {
	if (mode == "")
		mode = "summary"
	phase = ""
}

{
	line = strip($0)
	if (line ~ /nfnl-cthelper-phase: /) {
		flush()
		phase = line
		sub(/.*nfnl-cthelper-phase: /, "", phase)
		if (mode == "rest")
			print
		next
	}
	if (line ~ /BUG: KCSAN: /) {
		flush()
		inrep = 1
		body = line "\n"
		racing = line "\n"
		instack = 0
		next
	}
	if (inrep) {
		if (line ~ /^====================+$/) {
			flush()
			next
		}
		body = body line "\n"
		# "read to 0x... of 8 bytes by task 163 on cpu 0:", "write (marked)
		# to ... by interrupt on cpu 1:", "race at unknown origin, with read
		# to ...:": an access's stack follows, up to a blank line.
		if (line ~ /bytes by (task [0-9]+|interrupt) on cpu [0-9]+:$/) {
			instack = 1
			next
		}
		if (line ~ /^[ \t]*$/)
			instack = 0
		else if (instack && line ~ /^ *(asm_(sysvec_|common_interrupt|spurious_interrupt)|__do_softirq\+|handle_softirqs\+)/)
			instack = 0
		else if (instack)
			racing = racing line "\n"
		next
	}
	if (mode == "rest" && line !~ /^====================+$/)
		print
}

END {
	flush()
	if (mode == "summary")
		printf "kcsan reports=%d ours=%d cmod=%d netfilter=%d other=%d\n",
			n, count["ours"], count["cmod"], count["netfilter"], count["other"]
}
