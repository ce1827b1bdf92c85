"""Training, with PyTorch: the float network (net.py), the training loop (train.py, the
`tzip train` command) and its conversion to the integer model the engine runs
(convert.py). Nothing that compresses or decompresses imports this package."""
