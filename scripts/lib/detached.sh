# Sourced by scripts that start servers. `detached CMD...` runs CMD with every descriptor above stderr
# closed. A server that inherits a caller's pipe keeps it open for ever, and then `$(scripts/services.sh)`
# in test.sh, or CI's capture of the log, waits for an end of output that never comes.
detached() {
  (
    for fd_path in /proc/"$BASHPID"/fd/*; do
      fd=${fd_path##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec "$@"
  )
}
