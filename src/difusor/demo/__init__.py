"""Demo: a clearly labelled synthetic authority for Irimbo, its site and its cortes."""
