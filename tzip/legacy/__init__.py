"""Formats this tzip still decodes (and writes when asked) but no longer writes by default,
moved aside so that tzip/codec.py reads as the current format: format 3's linear mixing
(linear.py, its adaptive models in mixing/).
"""
