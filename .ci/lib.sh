# Helpers for .ci/run (sourced; kept apart so that tests/test_repo.py can exercise them).

# The one command in the first fenced code block after the line <!-- $1 --> in file $2
# (default README.md). Exits 1 unless that block holds exactly one non-empty line.
quickstart_command() {
    local marker="<!-- $1 -->" file="${2:-README.md}" cmd count
    cmd="$(awk -v m="$marker" '
        index($0, m) { found = 1; next }
        found && /^[[:space:]]*```/ { if (fence) exit; fence = 1; next }
        found && fence && NF { print }
    ' "$file")"
    count="$(printf '%s' "$cmd" | grep -c . || true)"
    if [[ "$count" -ne 1 ]]; then
        echo ".ci/run: $file must have exactly one command in the code block after $marker (found $count)" >&2
        exit 1
    fi
    printf '%s\n' "$cmd"
}

# Run one command line in a child bash with -euo pipefail. A non-zero exit code ends CI with
# that code; exit code 5 (pytest: no tests collected) ends it with 1, since no test ran.
step() {
    echo "+ $1"
    local rc=0
    bash -euo pipefail -c "$1" || rc=$?
    if [[ "$rc" -eq 5 ]]; then
        echo ".ci/run: '$1' exited 5: pytest collected no tests" >&2
        exit 1
    elif [[ "$rc" -ne 0 ]]; then
        echo ".ci/run: '$1' failed with exit code $rc" >&2
        exit "$rc"
    fi
}
