#!/usr/bin/env bash
# Writes a ClamAV signature database for development and tests into <dir> (created if missing):
#   test.hdb  the EICAR test string (68 bytes, MD5 44d886…) as Eicar-Test-Signature, and, when
#             Debian's clamav-testfiles is installed, the MD5 of its clam.exe sample, so the
#             samples inside archives (/usr/share/clamav-testfiles/clam.zip, .7z, …) are found too.
# Needs no internet: these are the only signatures a dev/test clamd knows (verdicts carry the
# suffix .UNOFFICIAL). Idempotent: rewrites the file only when its content changes.
set -euo pipefail

dir=${1:?usage: make-test-db.sh <database dir>}
mkdir -p "$dir"

content='44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature'
samples=/usr/share/clamav-testfiles
if [[ -f $samples/clam.exe ]]; then
    # Same "md5:size:name" layout as `sigtool --md5`, with a descriptive name.
    md5=$(md5sum "$samples/clam.exe" | cut -d' ' -f1)
    size=$(stat -c %s "$samples/clam.exe")
    content+=$'\n'"$md5:$size:ClamAV-Test-File"
fi

target=$dir/test.hdb
if [[ ! -f $target ]] || [[ "$(cat "$target")" != "$content" ]]; then
    printf '%s\n' "$content" >"$target.tmp"
    mv "$target.tmp" "$target"
fi
