"""pillars: CNNs, LSTMs, Transformers and GANs, trained end to end on real offline data."""
__version__ = "0.1.0"
