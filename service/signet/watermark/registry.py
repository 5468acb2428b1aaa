"""The watermark schemes a keys file may name, by their ``scheme`` value.

Adding a scheme: write its module in this package (a ``KeyEntry`` and a ``WatermarkScheme``,
see ``scheme.py``), list its key model here, and test it. Nothing else names schemes.
"""

from __future__ import annotations

from signet.watermark.gumbel import GumbelKey
from signet.watermark.gumbel_dual_key import DualKeyGumbelKey
from signet.watermark.kgw import SCHEME_NAME as KGW
from signet.watermark.kgw import KgwKey
from signet.watermark.lefthash import LefthashKey
from signet.watermark.scheme import KeyEntry
from signet.watermark.selfhash import SelfhashKey
from signet.watermark.synthid import SynthIdKey
from signet.watermark.unigram import UnigramKey

_KEY_MODELS: tuple[type[KeyEntry], ...] = (
    KgwKey,
    LefthashKey,
    GumbelKey,
    UnigramKey,
    SelfhashKey,
    SynthIdKey,
    DualKeyGumbelKey,
)
SCHEMES: dict[str, type[KeyEntry]] = {model.scheme_name: model for model in _KEY_MODELS}
# Keys written before there were several schemes name none: they are KGW keys.
DEFAULT_SCHEME = KGW


def scheme_tag(value: object) -> str:
    """The ``scheme`` of a keys-file entry (a dict) or of a key model, for pydantic's discriminator."""
    if isinstance(value, dict):
        return value.get("scheme", DEFAULT_SCHEME)
    return getattr(value, "scheme", DEFAULT_SCHEME)
