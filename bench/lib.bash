# Shared by the bench/*.sh scripts (sourced; not a benchmark itself).

# median FILE COLUMN: the median of one whitespace-separated column.
median() {
	awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{a[NR]=$1} END {
		if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}

# measure NAME ENGINE ARGS...: RUNS runs of the caller's `run_vmm ENGINE
# LOG ARGS...` (through bench/boottime or bench/stamp.py), each of which
# must exit 0; the caller's before_run ARGS..., when defined, prepares
# each. Columns in $tmp/NAME: first_byte_ms exit_ms maxrss_kib user_ms
# sys_ms status [stamp.py's work_ms] cpu_ms; the last run's console in
# $tmp/NAME.log. On a failure prints the log's lines matching
# $FAIL_LINES and exits 1.
measure() {
	local name=$1 engine=$2 st
	shift 2
	: >"$tmp/$name"
	for ((r = 0; r < RUNS; r++)); do
		rm -f "$tmp/$name.log"
		if declare -F before_run >/dev/null; then
			before_run "$@"
		fi
		run_vmm "$engine" "$tmp/$name.log" "$@" |
			awk '{print $0, $4 + $5}' >>"$tmp/$name"
		st=$(tail -n 1 "$tmp/$name" | cut -d' ' -f6)
		if [ "$st" != 0 ]; then
			echo "$0: $name ($engine $*) did not pass: exit status $st" >&2
			grep -E "$FAIL_LINES" "$tmp/$name.log" | sed 's/^/  /' >&2
			exit 1
		fi
	done
}
