# bash completion for lkvm                                  -*- shell-script -*-
#
# Everything comes from the lkvm being completed: `lkvm help --options`
# lists its commands, `lkvm help --options COMMAND` a command's options
# ("--name ARG") and subcommands (bare words), `lkvm list` the guests. So
# a new option or command completes without touching this file.
#
# Installed as share/bash-completion/completions/lkvm; to try it from a
# build tree: source completions/lkvm.bash

# The first word of each line of `lkvm help --options [COMMAND]`.
_lkvm_listing()
{
	"$1" help --options ${2:+"$2"} 2>/dev/null
}

# The names of the guests that `lkvm list` shows.
_lkvm_guests()
{
	"$1" list 2>/dev/null | awk 'NR > 1 { print $1 }'
}

_lkvm()
{
	local lkvm=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]}
	local prev= cmd= listing arg line i
	local IFS=$'\n'

	COMPREPLY=()
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	if ((COMP_CWORD == 1)); then
		COMPREPLY=($(compgen -W "$(_lkvm_listing "$lkvm")
--help
--version" -- "$cur"))
		return 0
	fi
	cmd=${COMP_WORDS[1]}
	listing=$(_lkvm_listing "$lkvm" "$cmd")

	# The argument of the option before: files, a choice "a|b", or
	# nothing to offer (a number, a name).
	if [[ $prev == -* ]]; then
		arg=
		while read -r line; do
			[[ $line == "$prev "* ]] && { arg=${line#"$prev "}; break; }
		done <<<"$listing"
		if [[ -n $arg ]]; then
			case $arg in
			DIR*)
				COMPREPLY=($(compgen -d -- "$cur")) ;;
			*FILE* | *PATH*)
				COMPREPLY=($(compgen -f -- "$cur")) ;;
			*'|'*)
				[[ $arg =~ ^[a-z|-]+$ ]] &&
					COMPREPLY=($(compgen -W "${arg//|/$'\n'}" -- "$cur")) ;;
			esac
			return 0
		fi
	fi

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(awk '/^-/ { print $1 }' <<<"$listing")" -- "$cur"))
		return 0
	fi
	case $cmd in
	help)
		((COMP_CWORD == 2)) &&
			COMPREPLY=($(compgen -W "$(_lkvm_listing "$lkvm")" -- "$cur"))
		return 0 ;;
	run)
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0 ;;
	esac
	# A subcommand (introspect info, read...) once, else a guest's name
	# for the commands whose usage names one.
	for ((i = 2; i < COMP_CWORD; i++)); do
		[[ ${COMP_WORDS[i]} != -* ]] && grep -qx -- "${COMP_WORDS[i]}" \
			<<<"$(awk '!/^-/' <<<"$listing")" && return 0
	done
	if grep -q '^[a-z]' <<<"$listing"; then
		COMPREPLY=($(compgen -W "$(awk '!/^-/' <<<"$listing")" -- "$cur"))
	elif "$lkvm" help "$cmd" 2>/dev/null | head -1 | grep -qw NAME; then
		COMPREPLY=($(compgen -W "$(_lkvm_guests "$lkvm")" -- "$cur"))
	fi
	return 0
}
complete -F _lkvm lkvm ./lkvm
