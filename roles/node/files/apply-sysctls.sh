# shellcheck shell=bash
# Run by the script module with bash (executable: /bin/bash).
# Apply sysctls given as KEY=VALUE arguments, writing only the ones that differ.
# Prints "changed KEY" for each written key and "missing KEY" for keys this kernel does not have.
set -euo pipefail
for pair in "$@"; do
  key=${pair%%=*}
  value=${pair#*=}
  path=/proc/sys/${key//.//}
  if [ ! -e "$path" ]; then
    echo "missing $key"
    continue
  fi
  current=$(tr -s '[:space:]' ' ' <"$path" | sed 's/ $//')
  wanted=$(echo "$value" | tr -s '[:space:]' ' ' | sed 's/ $//')
  if [ "$current" != "$wanted" ]; then
    echo "$value" >"$path"
    echo "changed $key"
  fi
done
