#!/bin/bash
# A compiler wrapper that measures a real build for the benchmarks' job
# tables (benches/data/*.txt): for each successful `-c` compile of a C or
# C++ source it appends "CPU-ms source-bytes file" to $TIMECC_LOG (default
# ./timecc.log), the CPU time being user + system of the compiler and its
# children. Used as a launcher: `timecc.sh gcc ARGS...`
# (CC="timecc.sh gcc", or CMake's CMAKE_<LANG>_COMPILER_LAUNCHER).
cc=$1
shift
log=${TIMECC_LOG:-$PWD/timecc.log}
src=
for a in "$@"; do case "$a" in *.c | *.cc | *.cpp | *.cxx) src=$a ;; esac; done
case " $* " in *" -c "*) ;; *) exec "$cc" "$@" ;; esac
TIMEFORMAT='%3U %3S'
times=$(mktemp) || exit 1
{ time "$cc" "$@" 2>&3; } 3>&2 2>"$times"
rc=$?
if [ -n "$src" ] && [ $rc -eq 0 ]; then
    read -r user sys <<<"$(tail -n 1 "$times")"
    ms=$(awk "BEGIN { printf \"%d\", ($user + $sys) * 1000 + 0.5 }")
    echo "$ms $(stat -c %s "$src") $src" >>"$log"
fi
rm -f "$times"
exit $rc
