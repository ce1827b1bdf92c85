"""Reversible byte transforms applied to a block before coding.

CRLF: the training text uses LF line endings, and a model that never saw CRLF codes such
files about 1 bit per byte worse. When every LF of a block is preceded by CR, the block is
coded with those CRs removed and the decoder puts them back; the mapping is exact
(a lone CR, or CR CR LF, survives the round trip).
"""
from __future__ import annotations


def crlf_applies(block: bytes) -> bool:
    n_lf = block.count(b"\n")
    return n_lf > 0 and block.count(b"\r\n") == n_lf


def crlf_to_lf(block: bytes) -> bytes:
    return block.replace(b"\r\n", b"\n")


def lf_to_crlf(block: bytes) -> bytes:
    return block.replace(b"\n", b"\r\n")
