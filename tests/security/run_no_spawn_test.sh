#!/usr/bin/env bash
# No program ever starts another process: none of them imports a way to (no shell, no exec, no fork),
# so no input, however hostile, can make one run a command. Checks the dynamic symbol imports of
# each program given on the command line.
set -euo pipefail
forbidden='^(system|popen|fork|vfork|_Fork|execl|execle|execlp|execv|execve|execvp|execvpe|execveat|fexecve|posix_spawn|posix_spawnp|wordexp)(@.*)?$'
command -v nm >/dev/null || { echo "no-spawn test: FAILED: nm is missing: apt-get install binutils" >&2; exit 1; }
status=0
for program in "$@"; do
  imports=$(nm -D --undefined-only "$program" | awk '{print $NF}')
  [ -n "$imports" ] || { echo "no-spawn test: FAILED: $program imports nothing: not a dynamic program?" >&2; exit 1; }
  bad=$(grep -E "$forbidden" <<<"$imports" || true)
  if [ -n "$bad" ]; then
    echo "no-spawn test: FAILED: $(basename "$program") imports $(echo $bad)" >&2
    status=1
  else
    echo "no-spawn test: $(basename "$program"): $(wc -l <<<"$imports") imports, none starts a process"
  fi
done
exit "$status"
