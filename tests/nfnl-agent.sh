# SPDX-License-Identifier: GPL-2.0
# Talking to tests/nfnl-tool.py, started once per test script (sourced after
# lib.sh).  Commands go in and replies come back through two FIFOs that stay
# open as file descriptors, so subshells can use them as well.

AGENT_PID=

# agent_start DIR [NETNS [MARKER]]: DIR holds the FIFOs.
agent_start() {
	local dir=$1 ns=${2:-} marker=${3:-}
	local -a pre=()
	[ -n "$ns" ] && pre=(ip netns exec "$ns")
	mkfifo "$dir/agent.in" "$dir/agent.out" || return 1
	timeout 900 "${pre[@]}" "$PY" "$TESTS_DIR/nfnl-tool.py" $marker \
		< "$dir/agent.in" > "$dir/agent.out" 2> "$dir/agent.err" &
	AGENT_PID=$!
	exec {AGENT_IN}> "$dir/agent.in" {AGENT_OUT}< "$dir/agent.out"
	agent_read
	[ "$AREPLY" = ready ] || { t_diag < "$dir/agent.err"; return 1; }
}

agent_read() {
	AREPLY=
	read -r -t 120 -u "$AGENT_OUT" AREPLY || AREPLY="no reply from the agent"
}

# agent CMD...: the reply is left in $AREPLY.
agent() {
	if [ -z "$AGENT_PID" ] || ! kill -0 "$AGENT_PID" 2> /dev/null; then
		AREPLY="agent not running"
		return
	fi
	printf '%s\n' "$*" >&"$AGENT_IN"
	agent_read
}

# t_agent DESC EXPECTED_REPLY CMD...
t_agent() {
	local desc=$1 want=$2
	shift 2
	agent "$@"
	t_eq "$desc" "$want" "$AREPLY"
}

agent_stop() {
	[ -n "$AGENT_PID" ] || return 0
	kill -0 "$AGENT_PID" 2> /dev/null && agent quit
	exec {AGENT_IN}>&- {AGENT_OUT}<&-
	kill "$AGENT_PID" 2> /dev/null
	wait "$AGENT_PID" 2> /dev/null
	AGENT_PID=
}
