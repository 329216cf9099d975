"""fgbg: synthetic foreground/background datasets with exact masks and depth.

Module map, in the order the data flows:

- ``assets``   read and prepare bg/fg folders (alpha, keying, trimming, resizing)
- ``plan``     every sample a config asks for, keys, shards
- ``compose``  placement sampling and alpha blending (pure numpy)
- ``depth``    depth sources (``layered``: bg map + fg layer at its foot)
- ``render``   one sample: composite + mask + depth, encoded
- ``store``    shard writers and readers per format, atomic writes
- ``generate`` plan -> workers -> store, with resume and progress
- ``demo``     the bundled demo assets and ``fgbg demo``
- ``cli``      the command line: parses and calls
"""

__version__ = "0.1.0"
