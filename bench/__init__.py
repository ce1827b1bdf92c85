"""The tzip benchmark suite: tzip models against classic compressors, round-trip verified.

    python -m bench --quick                 # a smoke test on three small files
    python -m bench --device cpu --models tzip-small     # all bench text files
    python -m bench download canterbury     # fetch a corpus into ~/.cache/tzip/corpora

See bench/README.md.
"""
