from .entry import tzip

tzip()
