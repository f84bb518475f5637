"""Speech data: manifests, real evaluation sets from package archives, synthetic speech, augmentation,
teacher pseudo-labels and hallucination probes. Heavy dependencies are imported lazily by each module."""
