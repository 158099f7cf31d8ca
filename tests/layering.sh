#!/bin/sh
# Layering: policy/, audit/ and common/ never include proxy/ headers; common/ includes nothing
# from the layers above it.
cd "$(dirname "$0")/.." || exit 2
bad=$(grep -rnE '#include *"(\.\./)*proxy/' policy audit common 2>/dev/null)
bad2=$(grep -rnE '#include *"(\.\./)*(policy|audit)/' common 2>/dev/null)
if [ -n "$bad$bad2" ]; then
    echo "layering violation:"; echo "$bad"; echo "$bad2"
    exit 1
fi
echo "layering: 1 passed, 0 failed"
