#!/bin/sh
# Layering: policy/, audit/ and common/ never include proxy/ headers; audit/ never includes
# policy/ (lookupgate-audit links audit/ alone); common/ includes nothing from the layers above.
cd "$(dirname "$0")/.." || exit 2
bad=$(grep -rnE '#include *"(\.\./)*proxy/' policy audit common 2>/dev/null)
bad2=$(grep -rnE '#include *"(\.\./)*(policy|audit)/' common 2>/dev/null)
bad3=$(grep -rnE '#include *"(\.\./)*policy/' audit 2>/dev/null)
if [ -n "$bad$bad2$bad3" ]; then
    echo "layering violation:"; echo "$bad"; echo "$bad2"; echo "$bad3"
    exit 1
fi
echo "layering: 1 passed, 0 failed"
