#!/usr/bin/env bash
# check-docs.sh (run by `make lint`): README.md stays a newcomer's page, and
# the documentation's links lead somewhere.
#
#   - README.md has at most MAX_README_LINES lines (default 450): findings,
#     tables and figures belong in docs/, one file per area;
#   - every relative Markdown link in README.md and docs/*.md points at a
#     file that exists, and a link with an anchor (file.md#heading) at a
#     heading that exists in that file, as GitHub makes heading anchors
#     (lower case, punctuation dropped, spaces to hyphens, -1, -2, ... for
#     repeats).
#
# Links inside fenced code blocks and `inline code` are not links. Each
# problem is one line; the exit status is 1 if there is any, 0 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C.UTF-8

max=${MAX_README_LINES:-450}
problems=0
problem() {
	echo "check-docs: $*" >&2
	problems=$((problems + 1))
}

lines=$(wc -l <README.md)
if [ "$lines" -gt "$max" ]; then
	problem "README.md has $lines lines, more than $max: move findings, tables and figures to a file in docs/ and link to it"
fi

# unfenced FILE: the file without its fenced code blocks.
unfenced() {
	awk '/^[[:space:]]*(```|~~~)/ { fenced = !fenced; next } !fenced' "$1"
}

# anchors FILE: the anchor of every heading in FILE, one a line.
anchors() {
	local -A seen=()
	local heading slug
	while IFS= read -r heading; do
		slug=$(printf '%s\n' "$heading" | sed -E '
			s/^#+[[:space:]]+//; s/[[:space:]]+#+[[:space:]]*$//
			s/!?\[([^]]*)\]\([^)]*\)/\1/g
			s/.*/\L&/
			s/[^[:alnum:] _-]//g
			s/ /-/g')
		if [ -n "${seen[$slug]+x}" ]; then
			seen[$slug]=$((seen[$slug] + 1))
			echo "$slug-${seen[$slug]}"
		else
			seen[$slug]=0
			echo "$slug"
		fi
	done < <(unfenced "$1" | grep -E '^#{1,6}[[:space:]]' || true)
}

declare -A anchor_cache=()
has_anchor() { # FILE ANCHOR
	if [ -z "${anchor_cache[$1]+x}" ]; then
		anchor_cache[$1]=$(anchors "$1")
	fi
	grep -qxF -- "$2" <<<"${anchor_cache[$1]}"
}

# links FILE: every link target in FILE's prose, one a line: inline links
# and images ](target "title"), and reference definitions [name]: target.
links() {
	# shellcheck disable=SC2016 # backticks are Markdown here, not expansions
	unfenced "$1" | sed -E 's/``[^`]*``//g; s/`[^`]*`//g' | {
		grep -oE '\]\([^)]*\)|^ {0,3}\[[^]]+\]:[[:space:]]*[^[:space:]]+' || true
	} | sed -E 's/^\]\(//; s/\)$//; s/^ {0,3}\[[^]]+\]:[[:space:]]*//' |
		awk '{ print $1 }' | sed -E 's/^<(.*)>$/\1/'
}

for doc in README.md docs/*.md; do
	dir=$(dirname "$doc")
	while IFS= read -r target; do
		[ -n "$target" ] || continue
		case $target in
		[a-zA-Z]*:*) continue ;; # https:, mailto:, ...
		esac
		path=${target%%#*}
		anchor=""
		[ "$path" = "$target" ] || anchor=${target#*#}
		if [ -z "$path" ]; then
			file=$doc
		else
			file=$dir/$path
		fi
		if [ ! -e "$file" ]; then
			problem "$doc: link to $target: $file does not exist"
			continue
		fi
		if [ -n "$anchor" ] && [[ $file == *.md ]] && ! has_anchor "$file" "$anchor"; then
			problem "$doc: link to $target: $file has no heading with the anchor #$anchor"
		fi
	done < <(links "$doc")
done

if [ "$problems" -gt 0 ]; then
	echo "check-docs: $problems problem(s) in README.md and docs/" >&2
	exit 1
fi
echo "check-docs: ok: README.md has $lines lines (at most $max); every relative link in README.md and docs/ leads to a file and heading that exist"
