"""How flow features encode motion: the names every layer shares (models, stages, training).

``signed``       displacement (raw, or divided by the largest magnitude): zero = no motion;
                 a horizontal mirror negates u.
``minmax-unit``  each map min-max scaled to 0..1 per sample: mirroring maps u -> 1 - u.
``minmax-byte``  the same to 0..255, as the widely shared composite (MEGC 2019) images:
                 u -> 255 - u.
"""

ENCODINGS = ("signed", "minmax-unit", "minmax-byte")
