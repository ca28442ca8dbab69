#!/usr/bin/env bash
# Mutation check for the core modules (not part of the test suite): mutmut mutates the
# lifecycle package and the risk checks, runs their unit tests against each mutant, and
# reports how many the tests killed and which survived.
#
#   benchmarks/mutation.sh                 # the lifecycle and plugins/risk.py
#   benchmarks/mutation.sh plugins/risk.py # one module (or package directory)
#
# It works on a copy of the tracked files (as they are in the working tree) in a temporary
# directory, so mutmut's mutants/ tree and cache never land in the checkout. Needs mutmut
# (`pip install -e '.[mutation]'`). MUTATION_KEEP=1 keeps the copy.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(supervisor/lifecycle plugins/risk.py)
fi
# The tests of the mutated modules: the lifecycle's package and every risk test module (a
# glob, so a new test_risk_*.py counts without an edit here).
tests=(tests/unit/lifecycle)
for module in "$repo"/tests/unit/plugins/test_risk*.py; do
    tests+=("tests/unit/plugins/$(basename "$module")")
done

"$python" -c "import mutmut" 2>/dev/null || {
    echo "mutation.sh: mutmut is not installed for $python (pip install mutmut)" >&2
    exit 2
}

work="$(mktemp -d "${TMPDIR:-/tmp}/ibfleet-mutation.XXXXXX")"
if [ "${MUTATION_KEEP:-0}" != 1 ]; then
    trap 'rm -rf "$work"' EXIT
fi
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$work"

# mutmut reads [tool.mutmut] from pyproject.toml; the copy gets one, the checkout does not.
{
    printf '\n[tool.mutmut]\npaths_to_mutate = ['
    printf '"%s", ' "${targets[@]}"
    printf ']\ntests_dir = ['
    printf '"%s", ' "${tests[@]}"
    printf ']\nalso_copy = ["gateway", "ibsim", "plugins", "supervisor", "tests"]\n'
    printf 'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-x"]\n'
} >> "$work/pyproject.toml"

cd "$work"
mutmut="$(dirname "$python")/mutmut"
"$mutmut" run --max-children "${MUTATION_JOBS:-$(nproc)}" > mutmut-run.log 2>&1 || true
"$mutmut" results --all true > results.txt 2>&1 || "$mutmut" results > results.txt 2>&1 || true

echo "mutation check: ${targets[*]}"
for status in killed survived timeout suspicious "no tests" skipped; do
    count=$(grep -c ": ${status}\$" results.txt || true)
    printf '  %-10s %s\n' "$status" "$count"
done
echo "surviving mutants (MUTATION_KEEP=1, then mutmut show NAME in the kept copy, shows one):"
grep ': survived$' results.txt | sed 's/: survived$//; s/^ */  /' || true
if [ "${MUTATION_KEEP:-0}" = 1 ]; then
    echo "kept: $work"
fi
