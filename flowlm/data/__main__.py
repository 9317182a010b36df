"""``python -m flowlm.data --fetch``: download and cache the embedded corpus (idempotent)."""

import sys

from flowlm.data.corpus import _main

sys.exit(_main())
