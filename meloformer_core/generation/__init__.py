"""Generation: the decoding cache run through the network's modules, sampling, and the
continue / arrange / infill loops with their takes and arrange's presence plan. The
network itself (`meloformer_core.model`) knows nothing of this package."""
