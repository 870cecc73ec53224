# Role keys on the board's flash: keys.json, {"patient": hex, "clinician": hex, "service": hex}
# (32 bytes each), written by `make flash KEYS=...` or the simulator; never in the repository.

import binascii
import json

from protocol import messages as m

PATH = "keys.json"


def load(path=PATH):
    """{role: key} for the roles provisioned; {} if there is no key file (then only open
    requests are served). A malformed file counts as no keys: it is never half-trusted."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        return {}
    except ValueError:
        return {}
    keys = {}
    for role in range(1, len(m.ROLE_NAMES)):
        text = raw.get(m.ROLE_NAMES[role]) if isinstance(raw, dict) else None
        if text is None:
            continue
        try:
            key = binascii.unhexlify(text)
        except (ValueError, TypeError):
            return {}
        if len(key) != m.KEY_SIZE:
            return {}
        keys[role] = key
    return keys
