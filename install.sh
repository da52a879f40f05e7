#!/usr/bin/env bash
# Install ekd and its backends into a virtual environment (default ./.venv).
#
#   ./install.sh                 core + all backends (ani, mace, nequip, hippynn) + the example plugin
#   ./install.sh core            ekd core only
#   ./install.sh core ani        core + one backend; any subset of: ani mace nequip hippynn example
#
# EKD_VENV=DIR puts the environment elsewhere; EKD_PYTHON picks the interpreter (default python3).
# Each backend installs alone with its own pins (ekd-mace brings mace-torch and its e3nn 0.4.4).
# Together, mace and nequip conflict on e3nn: mace-torch 0.3.16 pins e3nn==0.4.4 but runs on
# e3nn 0.6 for models built from scratch, which nequip 0.19.1 needs. So with both, mace-torch
# and ekd-mace are installed with --no-deps after their runtime dependencies, and the script
# checks the result.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${EKD_VENV:-.venv}
PYTHON=${EKD_PYTHON:-python3}
TORCH_PIN="torch==2.13.0"            # the CPU build; a looser spec pulls a multi-GB CUDA build
TORCHANI_PIN="torchani==2.9.0"
NEQUIP_PIN="nequip==0.19.1"          # unpinned, pip resolves to the old 0.6 API
E3NN_PIN="e3nn>=0.6,<0.7"
MACE_PIN="mace-torch==0.3.16"
HIPPYNN_PIN="hippynn==0.1.3"        # needs only torch and numpy
MACE_RUNTIME_DEPS=(opt_einsum torch-ema prettytable matscipy torchmetrics python-hostlist
                   configargparse GitPython tqdm lmdb orjson matplotlib pandas)

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(core ani mace nequip hippynn example)
want() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
for p in "${parts[@]}"; do
  case "$p" in core|ani|mace|nequip|hippynn|example) ;; *) echo "install.sh: unknown part '$p' (expected core, ani, mace, nequip, hippynn, example)" >&2; exit 2;; esac
done

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip

echo "== torch"
"${pip[@]}" install -q "$TORCH_PIN"
echo "== ekd core"
"${pip[@]}" install -q -e ".[test,reference,sample]" "$TORCH_PIN"

mace_beside_nequip=false
want mace && want nequip && mace_beside_nequip=true
backend_reqs=()
want ani && backend_reqs+=("$TORCHANI_PIN" -e plugins/ekd-ani)
want hippynn && backend_reqs+=("$HIPPYNN_PIN" -e plugins/ekd-hippynn)
want nequip && backend_reqs+=("$NEQUIP_PIN" "$E3NN_PIN" -e plugins/ekd-nequip)
if want mace; then
  if $mace_beside_nequip; then backend_reqs+=("$E3NN_PIN" "${MACE_RUNTIME_DEPS[@]}"); else backend_reqs+=("$MACE_PIN" -e plugins/ekd-mace); fi
fi
want example && backend_reqs+=(-e "plugins/ekd-pairmlp")  # the example plugin of docs/plugins.md
if [ ${#backend_reqs[@]} -gt 0 ]; then
  echo "== backends: ${parts[*]}"
  "${pip[@]}" install -q "$TORCH_PIN" "${backend_reqs[@]}"
fi
if $mace_beside_nequip; then
  "${pip[@]}" install -q --no-deps "$MACE_PIN" -e plugins/ekd-mace
fi

echo "== checking the environment"
checks="import ekd, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
want ani && checks+="; import torchani"
want nequip && checks+="; import nequip"
want mace && checks+="; import mace.modules"
want hippynn && checks+="; import hippynn"
if want nequip; then
  checks+="; import e3nn; assert e3nn.__version__.startswith('0.6.'), 'e3nn ' + e3nn.__version__ + ' is not 0.6.x'"
fi
for plugin in ani mace nequip hippynn; do
  want "$plugin" && checks+="; from ekd.plugins import get_backend; get_backend('$plugin')"
done
if ! out=$("$VENV/bin/python" -W ignore -c "$checks" 2>&1); then
  echo "$out" >&2
  echo "install.sh: environment check failed: $checks" >&2
  exit 1
fi

# pip check names mace-torch's e3nn==0.4.4 pin (expected, see above); anything else is a real conflict
unexpected=$("${pip[@]}" check 2>&1 | grep -v "^No broken requirements" | grep -v "^mace-torch [0-9.]* has requirement e3nn==" || true)
if [ -n "$unexpected" ]; then
  echo "install.sh: pip check found conflicts:" >&2
  echo "$unexpected" >&2
  exit 1
fi
echo "== ekd installed in $VENV (${parts[*]}); activate with: source $VENV/bin/activate"
