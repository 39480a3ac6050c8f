# Sourced by the scripts: find the interpreters notipipe is tested on.
#   gil_pythons  -> GIL builds of CPython >= 3.12 (one line each, deduplicated by version)
#   ft_python    -> a free-threaded CPython (3.13t/3.14t), or fails loudly
# Search order: $NOTIPIPE_PYTHONS (space-separated), python3.12..3.14 on PATH, pyenv's versions.

_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

_is_gil_312plus() {
  "$1" -c 'import sys, sysconfig; sys.exit(not (sys.version_info >= (3, 12) and not sysconfig.get_config_var("Py_GIL_DISABLED")))' 2>/dev/null
}

gil_pythons() {
  local candidates=() seen="" p v
  if [[ -n "${NOTIPIPE_PYTHONS:-}" ]]; then
    read -r -a candidates <<<"$NOTIPIPE_PYTHONS"
  else
    for v in 3.12 3.13 3.14; do
      p=$(command -v "python$v" 2>/dev/null) && candidates+=("$p")
      if command -v pyenv >/dev/null 2>&1; then
        while read -r full; do
          [[ -x "$(pyenv root)/versions/$full/bin/python$v" ]] && candidates+=("$(pyenv root)/versions/$full/bin/python$v")
        done < <(pyenv versions --bare 2>/dev/null | grep -E "^$v\.[0-9]+$" | sort -V -r)
      fi
    done
  fi
  for p in "${candidates[@]}"; do
    _is_gil_312plus "$p" || continue
    v=$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ " $seen " == *" $v "* ]] && continue
    seen="$seen $v"
    echo "$p"
  done
}

ft_python() {
  local p tool
  for p in "${NOTIPIPE_FT_PYTHON:-}" "$(command -v python3.14t 2>/dev/null)" "$(command -v python3.13t 2>/dev/null)"; do
    [[ -n "$p" && -x "$p" ]] && "$p" -c 'import sys; sys.exit(sys._is_gil_enabled())' 2>/dev/null && { echo "$p"; return 0; }
  done
  # This machine's tool builds (once, then caches) a python3.13t from Debian's source package.
  for tool in "${NOTIPIPE_FT_TOOL:-}" "$_root/../shared/tools/free-threaded-python" /work/shared/tools/free-threaded-python; do
    [[ -n "$tool" && -x "$tool" ]] && { "$tool"; return $?; }
  done
  echo "no free-threaded interpreter: put python3.13t or python3.14t on PATH, or set NOTIPIPE_FT_PYTHON" >&2
  return 1
}

venv_tag() {  # "3.12", "3.13t", ...
  "$1" -c 'import sys, sysconfig; print("%d.%d%s" % (*sys.version_info[:2], "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))'
}

setup_venv() {  # $1 interpreter, $2 venv dir, then extra packages to install (test tools, linters)
  local py=$1 venv=$2; shift 2
  [[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  if (($#)); then
    # --prefer-binary: on 3.13t some tools (new hypothesis) have only sdists that need the network.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --prefer-binary "$@" 2>&1 \
      | { grep -v '^WARNING: Location' || true; }
  fi
  # A regular install from this checkout: compiles the Cython twins (build isolation brings Cython).
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --prefer-binary --force-reinstall . 2>&1 \
    | { grep -v '^WARNING: Location' || true; }
  "$venv/bin/python" -c 'import notipipe' || { echo "notipipe does not import in $venv" >&2; return 1; }
}
