#!/usr/bin/env bash
# Vendor TF.js from the npm registry's package tarballs into static/vendor/tfjs/.
# Reproducible: pinned versions, `npm pack` (no install, no CDN); run from anywhere.
set -euo pipefail

VERSION="${TFJS_VERSION:-4.22.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/static/vendor/tfjs"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
npm pack --silent "@tensorflow/tfjs@$VERSION" "@tensorflow/tfjs-backend-wasm@$VERSION" >/dev/null
mkdir tfjs wasm
tar -xzf "tensorflow-tfjs-$VERSION.tgz" -C tfjs
tar -xzf "tensorflow-tfjs-backend-wasm-$VERSION.tgz" -C wasm

rm -rf "$DEST"
mkdir -p "$DEST"
cp tfjs/package/dist/tf.min.js "$DEST/"
cp wasm/package/dist/tf-backend-wasm.min.js "$DEST/"
cp wasm/package/dist/tfjs-backend-wasm.wasm \
   wasm/package/dist/tfjs-backend-wasm-simd.wasm \
   wasm/package/dist/tfjs-backend-wasm-threaded-simd.wasm "$DEST/"
# The 4.22.0 tarballs ship no LICENSE file: package.json says "Apache-2.0" and each dist file opens with
# Google's @license notice. Keep that notice, the declared licence and the full Apache-2.0 text.
APACHE=/usr/share/common-licenses/Apache-2.0   # Debian's copy of the licence text
write_license() {  # $1 unpacked package dir, $2 dist file, $3 output
  {
    echo "Package: $(node -p "const p=require('./$1/package/package.json'); p.name+'@'+p.version")"
    echo "Declared licence (package.json): $(node -p "require('./$1/package/package.json').license")"
    echo "Source: https://github.com/tensorflow/tfjs"
    echo
    echo "Notice at the top of $2:"
    echo
    sed -n '1,/\*\//p' "$1/package/dist/$2"
    echo
    if [ -f "$APACHE" ]; then
      echo "Full text of the Apache License, Version 2.0:"
      echo
      cat "$APACHE"
    else
      echo "Full text of the Apache License, Version 2.0: https://www.apache.org/licenses/LICENSE-2.0.txt"
    fi
  } > "$3"
}
write_license tfjs tf.min.js "$DEST/LICENSE-tfjs"
write_license wasm tf-backend-wasm.min.js "$DEST/LICENSE-tfjs-backend-wasm"

cat > "$DEST/README.md" <<README
# TensorFlow.js $VERSION (vendored)

Taken unmodified from the npm registry's package tarballs, \`package/dist/\`:

| file | package |
|---|---|
| tf.min.js | @tensorflow/tfjs@$VERSION |
| tf-backend-wasm.min.js, tfjs-backend-wasm.wasm, tfjs-backend-wasm-simd.wasm, tfjs-backend-wasm-threaded-simd.wasm | @tensorflow/tfjs-backend-wasm@$VERSION |

Licence: Apache-2.0 (both packages). The tarballs carry no LICENSE file, so LICENSE-tfjs and
LICENSE-tfjs-backend-wasm hold each package's declared licence, the notice its dist file opens with, and the
full Apache-2.0 text.

Reproduce (needs npm and network access to the npm registry only):

    scripts/vendor_tfjs.sh              # or TFJS_VERSION=x.y.z scripts/vendor_tfjs.sh

SHA-256 of the vendored files:

\`\`\`
$(cd "$DEST" && sha256sum tf.min.js tf-backend-wasm.min.js ./*.wasm | sed 's# \./# #')
\`\`\`
README
chmod 644 "$DEST"/*
ls -l "$DEST"
